-- Detection that does not depend on how the broker spreads messages (docs/adr/0011).
-- Portable PostgreSQL, with or without TimescaleDB.

-- Each ingest worker's low watermark: the arrival time (its own clock, epoch µs) of its oldest
-- message received and not yet committed, or its clock when it holds none. Upserted every
-- detector tick; removed when the worker stops. heartbeat_at is the database's clock, so that
-- liveness does not depend on the workers' clocks.
CREATE TABLE ingest_watermarks (
    worker_id        text PRIMARY KEY,
    low_watermark_us bigint NOT NULL,
    heartbeat_at     timestamptz NOT NULL DEFAULT now()
);

-- Vehicles are hashed into a fixed number of partitions (TELEMETRY_DETECT_PARTITIONS); a
-- worker's detector judges the partitions it holds a lease on. judged_through_us: every row
-- of the partition that arrived up to this time (epoch µs) has been read by a detector tick.
-- A new deployment starts from the time of this migration: rows stored before it were judged
-- by the ingest batch, as before.
CREATE TABLE detection_leases (
    partition         integer PRIMARY KEY CHECK (partition >= 0),
    holder            text,
    expires_at        timestamptz NOT NULL DEFAULT '-infinity',
    judged_through_us bigint NOT NULL
        DEFAULT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint
);
INSERT INTO detection_leases (partition) SELECT generate_series(0, 63);

-- Per walk-through vehicle: the measurement time (epoch µs) of the newest reading the detector
-- has consumed (passes closed or carried, sensor faults written), the flat-line rule's run
-- start per pollutant of the kind at that reading, and the drive pass still open after it
-- (NULL segment: none): its segment, first and last measurement time, newest arrival, readings
-- and, per pollutant, the count, sum and maximum of its finite values. Whether a vehicle went
-- quiet without sending is read from vehicles.last_received_at, kept by the ingest batch.
CREATE TABLE walkthrough_detect_cursors (
    vehicle_id       text PRIMARY KEY,
    judged_us        bigint NOT NULL,
    flat_since_us    bigint[] NOT NULL,
    open_segment_id  bigint,
    open_first_us    bigint,
    open_last_us     bigint,
    open_received_us bigint,
    open_readings    bigint,
    open_n           float8[],
    open_total       float8[],
    open_peak        float8[],
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The detector finds what arrived since its last tick by arrival time. On a hypertable the
-- index is created on every chunk; the detector also bounds ts so that only recent chunks are
-- searched.
CREATE INDEX walkthrough_readings_received ON walkthrough_readings (received_at);
