-- Analyser lags and calibration periods of walk-through vehicles (docs/domain.md §5.8, §5.9).
-- Portable PostgreSQL, with or without TimescaleDB: two small reference tables.

-- The current lag of each vehicle's pollutant channel: a value reported at t was sampled at
-- t - lag_s. Registered by hand ('registered') or estimated from recorded drives past a known
-- source ('estimated': the drives' window, the correlation's peak in score, the source and
-- the curve in details). One row per (vehicle, pollutant); every change is in audit_log
-- (entity 'analyser_lag', entity_id '<vehicle>/<pollutant>') with the row before and after.
CREATE TABLE analyser_lags (
    vehicle_id     text NOT NULL CHECK (vehicle_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    pollutant      text NOT NULL CHECK (pollutant ~ '^[a-z0-9_]{1,32}$'),
    lag_s          double precision NOT NULL CHECK (lag_s >= 0 AND lag_s <= 600),
    method         text NOT NULL CHECK (method IN ('registered', 'estimated')),
    estimated_from timestamptz,
    estimated_to   timestamptz,
    score          double precision,
    details        jsonb,
    set_by         text NOT NULL,
    set_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, pollutant),
    CHECK ((method = 'estimated') = (estimated_from IS NOT NULL AND estimated_to IS NOT NULL)),
    CHECK (estimated_from < estimated_to)
);

-- Zero/span calibrations an operator registered: the vehicle's channel (pollutant NULL: every
-- channel) is excluded from detection and from the street map over [starts_at, ends_at).
-- Creation and deletion are audited (entity 'calibration_period').
CREATE TABLE calibration_periods (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vehicle_id text NOT NULL CHECK (vehicle_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    pollutant  text CHECK (pollutant ~ '^[a-z0-9_]{1,32}$'),
    kind       text NOT NULL CHECK (kind IN ('zero', 'span')),
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    note       text,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (starts_at < ends_at)
);
CREATE INDEX calibration_periods_vehicle ON calibration_periods (vehicle_id, starts_at);
