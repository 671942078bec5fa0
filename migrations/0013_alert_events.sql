-- Alert state transitions, for the live stream (GET /api/v1/events). One row per transition,
-- written by a trigger in the same transaction as the change, however it is made (ingest,
-- the sweep, verification, an officer); an alert that stays open and gathers occurrences
-- writes nothing. The id orders the events and is the stream's event id (Last-Event-ID).
--
-- The triggers are deferred to the commit and take one transaction-level advisory lock before
-- they number their events, so events become visible in id order: a reader that has seen id n
-- can never later find a new event below n. The lock is the last one such a transaction
-- takes (every row lock is already held at commit), so it cannot close a deadlock cycle.
-- A later migration that changes rows of alerts and then alters the table in the same
-- transaction starts with SET CONSTRAINTS ALL IMMEDIATE (pending trigger events block DDL).
CREATE TABLE alert_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint NOT NULL,
    type       text NOT NULL
               CHECK (type IN ('opened', 'escalated', 'acknowledged', 'confirmed', 'stale',
                               'resolved')),
    at         timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL,
    pollutant  text NOT NULL,
    rule       text NOT NULL,
    severity   text NOT NULL,
    status     text NOT NULL,
    segment_id bigint
);

CREATE FUNCTION alert_events_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ranks CONSTANT text[] := ARRAY['info', 'warning', 'critical'];
    types text[] := ARRAY[]::text[];
    t text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        types := ARRAY['opened'];
        IF NEW.status = 'resolved' THEN
            types := types || 'resolved'::text;
        END IF;
    ELSE
        IF coalesce(array_position(ranks, NEW.severity), 0)
           > coalesce(array_position(ranks, OLD.severity), 0) THEN
            types := types || 'escalated'::text;
        END IF;
        IF OLD.confidence IS DISTINCT FROM 'confirmed' AND NEW.confidence = 'confirmed' THEN
            types := types || 'confirmed'::text;
        END IF;
        IF OLD.status = 'open' AND NEW.status = 'acknowledged' THEN
            types := types || 'acknowledged'::text;
        END IF;
        IF OLD.stale_since IS NULL AND NEW.stale_since IS NOT NULL THEN
            types := types || 'stale'::text;
        END IF;
        IF OLD.status <> 'resolved' AND NEW.status = 'resolved' THEN
            types := types || 'resolved'::text;
        END IF;
    END IF;
    IF cardinality(types) = 0 THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('alert_events'));
    FOREACH t IN ARRAY types LOOP
        INSERT INTO alert_events (alert_id, type, kind, pollutant, rule, severity, status,
                                  segment_id)
        VALUES (NEW.id, t, NEW.kind, NEW.pollutant, NEW.rule, NEW.severity, NEW.status,
                NEW.segment_id);
    END LOOP;
    PERFORM pg_notify('alert_events', '');
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER alert_events_opened
    AFTER INSERT ON alerts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION alert_events_record();

CREATE CONSTRAINT TRIGGER alert_events_changed
    AFTER UPDATE ON alerts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.severity IS DISTINCT FROM NEW.severity
          OR OLD.confidence IS DISTINCT FROM NEW.confidence
          OR OLD.stale_since IS DISTINCT FROM NEW.stale_since)
    EXECUTE FUNCTION alert_events_record();
