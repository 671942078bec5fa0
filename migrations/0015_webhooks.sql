-- Webhook notification targets and their deliveries (docs/webhooks.md).
--
-- A target is a URL that receives every alert state transition (the rows of alert_events,
-- migration 0013) matching its filters, POSTed as JSON and signed with its secret. The secret
-- is kept as given because signing needs it; it is answered once, when the target is made.
--
-- One delivery row per (target, event), written by a trigger on alert_events in the same
-- transaction as the transition: a committed transition always has its deliveries, and the
-- unique key makes a second one impossible. Any number of API processes deliver them: each
-- claims due rows with FOR UPDATE SKIP LOCKED and moves their next_attempt_at past the time
-- an attempt may take (a lease), so a process that dies mid-attempt leaves the row due again
-- instead of lost.
CREATE TABLE webhooks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url         text NOT NULL CHECK (url ~ '^https?://'),
    secret      text NOT NULL CHECK (length(secret) >= 16),
    description text,
    -- NULL: no filter; else the event must match one of the values.
    kinds       text[],
    severities  text[],
    event_types text[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    -- Failed attempts in a row (reset by a success); the API shows a target as failing from
    -- a setting's number on.
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error  text
);

CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        bigint NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_status     integer,  -- the receiver's HTTP status, NULL when none came
    last_error      text,
    delivered_at    timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_target ON webhook_deliveries (webhook_id, id DESC);

CREATE FUNCTION webhook_deliveries_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id)
    SELECT w.id, NEW.id
    FROM webhooks AS w
    WHERE (w.kinds IS NULL OR NEW.kind = ANY (w.kinds))
      AND (w.severities IS NULL OR NEW.severity = ANY (w.severities))
      AND (w.event_types IS NULL OR NEW.type = ANY (w.event_types));
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_deliveries_enqueue
    AFTER INSERT ON alert_events
    FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_enqueue();

-- The live stream's positions (GET /api/v1/events) read the vehicles heard from recently,
-- once per tick per API process.
CREATE INDEX vehicles_last_received ON vehicles (last_received_at);
