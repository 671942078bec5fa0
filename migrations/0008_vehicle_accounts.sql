-- Vehicles' broker accounts: every vehicle that may publish is registered here, with the hash of
-- its MQTT password. The single source of truth for the broker: `telemetry broker run` writes
-- Mosquitto's password and ACL files from it, and a clustered broker (EMQX) can authenticate
-- and authorise against it directly. Why and how: docs/adr/0007-broker-accounts.md.

CREATE TABLE vehicle_accounts (
    -- The MQTT username, and the last level of the only topic it may publish to. No MQTT
    -- wildcard, separator or password-file separator can occur in it.
    vehicle_id    text PRIMARY KEY CHECK (vehicle_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    kind          text NOT NULL,
    -- PBKDF2-HMAC-SHA512 of the password: the salt as text (its UTF-8 bytes are the salt), the
    -- derived key as lower-case hex, and the iteration count. Mosquitto's `$7$` password lines
    -- and EMQX's pbkdf2 authenticator both take exactly these.
    salt          text NOT NULL CHECK (salt <> ''),
    password_hash text NOT NULL CHECK (password_hash ~ '^[0-9a-f]{128}$'),
    iterations    integer NOT NULL CHECK (iterations > 0),
    enabled       boolean NOT NULL DEFAULT true,
    -- Registered by a simulator or load test, which issue a new password on every run; they
    -- never take over a vehicle registered by a person.
    simulated     boolean NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL DEFAULT now(),
    -- When the current password was issued, and when the account was last disabled.
    password_set_at timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- Every change, however it is made, wakes the broker runners listening on this channel; they
-- re-read the table and reload the broker.
CREATE FUNCTION vehicle_accounts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vehicle_accounts', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER vehicle_accounts_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vehicle_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION vehicle_accounts_notify();
