-- People and what they may do: accounts with one role each, the API tokens they hold, the
-- login throttle, and the audit log of every change made over the API or the command line.
-- Why opaque tokens stored as digests, and why the throttle lives here: docs/adr/0008.

-- One account per person. Roles are ordered: viewer < officer < admin; each may do what the
-- roles below it may. Accounts are disabled, never deleted, so that the audit log keeps naming
-- them. The password is an argon2id hash in PHC string form (parameters included).
CREATE TABLE accounts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    role          text NOT NULL CHECK (role IN ('viewer', 'officer', 'admin')),
    password_hash text NOT NULL,
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens. Only the SHA-256 digest of a token is stored: a copy of this table cannot be
-- used to call the API. A token is valid while it is neither expired nor revoked and its account
-- is not disabled; every API process checks that here on each request, so a revocation applies
-- at once everywhere.
CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    digest      bytea NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    client      text                       -- the address the token was issued to
);
CREATE INDEX api_tokens_live ON api_tokens (account_id) WHERE revoked_at IS NULL;
CREATE INDEX api_tokens_expiry ON api_tokens (expires_at);

-- Failed logins per key ('user:<name>' or 'addr:<address>') in a fixed window that starts at
-- the first attempt after the previous window ended. An attempt counts before the password is
-- checked (so that concurrent attempts cannot slip past the limit) and a success takes its
-- count back. Shared by every API process.
CREATE TABLE login_throttle (
    key          text PRIMARY KEY,
    failures     integer NOT NULL CHECK (failures >= 0),
    window_start timestamptz NOT NULL
);

-- Every change: who (the account, or 'cli:<user>' from the command line), when (the
-- transaction's time), what (action, entity and its id) and the entity before and after (JSON;
-- NULL for a creation's before). Written in the transaction of the change itself.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    account_id  bigint REFERENCES accounts (id),   -- NULL: the command line
    account     text NOT NULL,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text NOT NULL,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_account ON audit_log (account, id);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
