-- requires: timescaledb
-- Applied only when the timescaledb extension is available; see docs/adr/0003.
-- Chunks of one day: at 1 Hz a vehicle writes 86,400 rows a day, so a 200-vehicle fleet's
-- current chunk (~17 M rows with its indexes) stays well inside a quarter of the server's memory.
SELECT create_hypertable('walkthrough_readings', by_range('ts', INTERVAL '1 day'),
                         migrate_data => true);

-- Compress segmented by vehicle, newest first; only chunks older than the oldest reading the
-- ingest path accepts (TELEMETRY_MAX_AGE_S, 7 days by default) so late data never lands in a
-- compressed chunk.
ALTER TABLE walkthrough_readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle_id',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('walkthrough_readings', compress_after => INTERVAL '8 days');

-- Retention drops whole chunks; change with remove_retention_policy / add_retention_policy.
SELECT add_retention_policy('walkthrough_readings', drop_after => INTERVAL '2 years');

-- The portable view from 0001 becomes a continuous aggregate with the same name and columns.
DROP VIEW walkthrough_segment_hourly;
CREATE MATERIALIZED VIEW walkthrough_segment_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
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
GROUP BY 1, 2
WITH NO DATA;

-- Refresh far enough back to cover the latest readings the ingest path still accepts.
SELECT add_continuous_aggregate_policy('walkthrough_segment_hourly',
    start_offset => INTERVAL '8 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
