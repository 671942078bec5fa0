-- Core schema, portable PostgreSQL (>= 14). TimescaleDB-only statements live in 0002.

CREATE TABLE road_segments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,              -- the imported file's name, or 'osm'
    road_ref    text NOT NULL,              -- the road's id inside that source
    seq         integer NOT NULL,           -- position of this piece along the road
    name        text,
    highway     text,
    length_m    double precision NOT NULL CHECK (length_m > 0),
    coords      jsonb NOT NULL,             -- GeoJSON LineString coordinates [[lon, lat], ...]
    min_lon     double precision NOT NULL,
    min_lat     double precision NOT NULL,
    max_lon     double precision NOT NULL,
    max_lat     double precision NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, road_ref, seq)
);

-- Walk-through (走航) readings: one row per vehicle and measurement second.
CREATE TABLE walkthrough_readings (
    vehicle_id      text NOT NULL,
    ts              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    lat             double precision NOT NULL,
    lon             double precision NOT NULL,
    speed_kmh       real,
    heading_deg     real,
    pm25            real,   -- µg/m³
    pm10            real,   -- µg/m³
    no2             real,   -- µg/m³
    o3              real,   -- µg/m³
    so2             real,   -- µg/m³
    co              real,   -- mg/m³
    tvoc            real,   -- µg/m³
    temp_c          real,
    rh_pct          real,
    wind_speed_ms   real,
    wind_dir_deg    real,
    flag            char(1) NOT NULL DEFAULT 'N',   -- HJ 212-2017 Table 8 data flag
    segment_id      bigint,                          -- NULL: not within snap tolerance
    snap_distance_m real,
    extra           jsonb,                           -- unknown fields, kept as sent
    stored_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (vehicle_id, ts)
);
CREATE INDEX walkthrough_readings_segment_ts ON walkthrough_readings (segment_id, ts DESC)
    WHERE segment_id IS NOT NULL;
CREATE INDEX walkthrough_readings_ts ON walkthrough_readings (ts DESC);

-- Last known state of every vehicle, maintained by the ingest batch (one row per vehicle).
CREATE TABLE vehicles (
    vehicle_id   text PRIMARY KEY,
    kind         text NOT NULL,
    last_ts      timestamptz NOT NULL,
    last_lat     double precision NOT NULL,
    last_lon     double precision NOT NULL,
    last_received_at timestamptz NOT NULL,
    readings     bigint NOT NULL DEFAULT 0
);

-- Everything that could not be accepted, with the raw bytes and the reason.
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    kind        text,
    vehicle_id  text,
    reason      text NOT NULL,      -- a stable code: malformed_json, schema, bad_coordinates, ...
    detail      text NOT NULL,      -- the human-readable explanation
    item_index  integer,            -- position inside an array payload, NULL for the whole message
    payload     bytea NOT NULL
);
CREATE INDEX dead_letters_received_at ON dead_letters (received_at DESC);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at DESC);

-- Exceedance thresholds, versioned by effective date so that a standard's revision is a new row.
CREATE TABLE thresholds (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text NOT NULL,
    pollutant      text NOT NULL,
    limit_value    double precision NOT NULL CHECK (limit_value > 0),
    unit           text NOT NULL,
    averaging      text NOT NULL,          -- the averaging time the limit is defined for: 1h, 24h, ...
    source         text NOT NULL,          -- the standard and clause the value comes from
    tier           text NOT NULL DEFAULT 'limit',
    severity       text NOT NULL DEFAULT 'warning',
    effective_from date NOT NULL,
    effective_to   date,                   -- exclusive; NULL: open-ended
    confirmed      boolean NOT NULL DEFAULT true,   -- false: UNCONFIRMED default, check the source
    note           text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (effective_to IS NULL OR effective_to > effective_from),
    UNIQUE (kind, pollutant, tier, effective_from)
);

-- GB 3095 Grade II, as an indicator: a pass mean is compared with the shortest averaging time the
-- standard defines for the pollutant (1 h for gases, 24 h for PM). Figures: docs/domain.md §2.
INSERT INTO thresholds (kind, pollutant, limit_value, unit, averaging, source, effective_from, effective_to) VALUES
  ('walkthrough', 'pm25', 75,  'ug/m3', '24h', 'GB 3095-2012 Grade II (HJ 633-2012 IAQI 100)', '2012-02-29', '2026-03-01'),
  ('walkthrough', 'pm10', 150, 'ug/m3', '24h', 'GB 3095-2012 Grade II (HJ 633-2012 IAQI 100)', '2012-02-29', '2026-03-01'),
  ('walkthrough', 'so2',  500, 'ug/m3', '1h',  'GB 3095-2012 Grade II (HJ 633-2012 IAQI 100)', '2012-02-29', '2026-03-01'),
  ('walkthrough', 'no2',  200, 'ug/m3', '1h',  'GB 3095-2012 Grade II (HJ 633-2012 IAQI 100)', '2012-02-29', '2026-03-01'),
  ('walkthrough', 'co',   10,  'mg/m3', '1h',  'GB 3095-2012 Grade II (HJ 633-2012 IAQI 100)', '2012-02-29', '2026-03-01'),
  ('walkthrough', 'o3',   200, 'ug/m3', '1h',  'GB 3095-2012 Grade II (HJ 633-2012 IAQI 100)', '2012-02-29', '2026-03-01'),
  ('walkthrough', 'pm25', 60,  'ug/m3', '24h', 'GB 3095-2026 Table 1, transitional Grade II', '2026-03-01', '2031-01-01'),
  ('walkthrough', 'pm10', 120, 'ug/m3', '24h', 'GB 3095-2026 Table 1, transitional Grade II', '2026-03-01', '2031-01-01'),
  ('walkthrough', 'so2',  500, 'ug/m3', '1h',  'GB 3095-2026 Table 1, transitional Grade II', '2026-03-01', '2031-01-01'),
  ('walkthrough', 'no2',  200, 'ug/m3', '1h',  'GB 3095-2026 Table 1, transitional Grade II', '2026-03-01', '2031-01-01'),
  ('walkthrough', 'co',   10,  'mg/m3', '1h',  'GB 3095-2026 Table 1, transitional Grade II', '2026-03-01', '2031-01-01'),
  ('walkthrough', 'o3',   200, 'ug/m3', '1h',  'GB 3095-2026 Table 1, transitional Grade II', '2026-03-01', '2031-01-01'),
  ('walkthrough', 'pm25', 50,  'ug/m3', '24h', 'GB 3095-2026 Table 1, Grade II', '2031-01-01', NULL),
  ('walkthrough', 'pm10', 100, 'ug/m3', '24h', 'GB 3095-2026 Table 1, Grade II', '2031-01-01', NULL),
  ('walkthrough', 'so2',  150, 'ug/m3', '1h',  'GB 3095-2026 Table 1, Grade II', '2031-01-01', NULL),
  ('walkthrough', 'no2',  200, 'ug/m3', '1h',  'GB 3095-2026 Table 1, Grade II', '2031-01-01', NULL),
  ('walkthrough', 'co',   10,  'mg/m3', '1h',  'GB 3095-2026 Table 1, Grade II', '2031-01-01', NULL),
  ('walkthrough', 'o3',   200, 'ug/m3', '1h',  'GB 3095-2026 Table 1, Grade II', '2031-01-01', NULL);
INSERT INTO thresholds (kind, pollutant, limit_value, unit, averaging, source, effective_from, confirmed, note) VALUES
  ('walkthrough', 'tvoc', 400, 'ug/m3', 'instant', 'DB3502/T 153-2024 (Xiamen): VOCs > 400 ug/m3 triggers a 10-min fixed-point measurement', '2024-01-01', false,
   'SECONDARY source, local standard; no national ambient TVOC limit exists');

-- Exceedance alerts as episodes: at most one unresolved alert per (kind, subject, pollutant, rule),
-- enforced here so that concurrent workers cannot create twins.
CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL,
    subject         text NOT NULL,        -- 'segment:<id>', later 'plate:<plate>', 'incident:<id>'
    segment_id      bigint,
    pollutant       text NOT NULL,
    rule            text NOT NULL,        -- 'limit' | 'hotspot' | ...
    severity        text NOT NULL DEFAULT 'warning',
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'acknowledged', 'resolved')),
    threshold_id    integer REFERENCES thresholds (id),
    limit_value     double precision NOT NULL,   -- the limit (or, for hotspots, factor x background)
    unit            text NOT NULL,
    averaging       text,
    source          text NOT NULL,               -- which standard or rule the limit comes from
    first_seen      timestamptz NOT NULL,        -- measurement times, not arrival times
    last_seen       timestamptz NOT NULL,
    occurrences     integer NOT NULL DEFAULT 1,
    last_value      double precision NOT NULL,
    peak_value      double precision NOT NULL,
    peak_multiple   double precision NOT NULL,   -- (C - S) / S at the peak
    vehicles        text[] NOT NULL DEFAULT '{}',
    details         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    acknowledged_by text,
    acknowledged_at timestamptz,
    ack_note        text,
    resolved_by     text,
    resolved_at     timestamptz,
    resolve_note    text
);
CREATE UNIQUE INDEX alerts_one_open_episode ON alerts (kind, subject, pollutant, rule)
    WHERE status <> 'resolved';
CREATE INDEX alerts_status_id ON alerts (status, id DESC);
CREATE INDEX alerts_segment ON alerts (segment_id, id DESC) WHERE segment_id IS NOT NULL;
CREATE INDEX alerts_last_seen_open ON alerts (last_seen) WHERE status <> 'resolved';

-- Hourly statistics per road segment. On TimescaleDB, 0002 replaces this view with a continuous
-- aggregate of the same name and columns, so queries against it are portable.
CREATE VIEW walkthrough_segment_hourly AS
SELECT date_bin('1 hour', ts, TIMESTAMPTZ '2000-01-01') AS bucket,
       segment_id,
       count(*)                 AS readings,
       avg(pm25) AS pm25_avg, max(pm25) AS pm25_max,
       avg(pm10) AS pm10_avg, max(pm10) AS pm10_max,
       avg(no2)  AS no2_avg,  max(no2)  AS no2_max,
       avg(o3)   AS o3_avg,   max(o3)   AS o3_max,
       avg(so2)  AS so2_avg,  max(so2)  AS so2_max,
       avg(co)   AS co_avg,   max(co)   AS co_max,
       avg(tvoc) AS tvoc_avg, max(tvoc) AS tvoc_max
FROM walkthrough_readings
WHERE segment_id IS NOT NULL AND flag = 'N'
GROUP BY 1, 2;
