-- requires: timescaledb
-- Applied only when the timescaledb extension is available; see docs/adr/0003.
-- Chunks of seven days: a remote-sensing site measures at most a few thousand passes an hour
-- (docs/domain.md §3.4: 200-3600 vehicles/h), two orders of magnitude fewer rows than a walk-through
-- vehicle's 1 Hz readings, so a week keeps chunks at a size comparable to walkthrough_readings'.
SELECT create_hypertable('rs_passes', by_range('ts', INTERVAL '7 days'),
                         migrate_data => true);

-- Compress segmented by measuring vehicle, newest first; only chunks older than the oldest pass
-- the ingest path accepts (TELEMETRY_MAX_AGE_S, 7 days by default) plus one chunk, so late data
-- never lands in a compressed chunk. The high-emitter rule reads a plate's valid passes of the
-- last 6 calendar months through rs_passes_plate_ts; compressed chunks still answer it.
ALTER TABLE rs_passes SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle_id',
    timescaledb.compress_orderby = 'ts DESC, lane'
);
SELECT add_compression_policy('rs_passes', compress_after => INTERVAL '15 days');

-- Retention drops whole chunks; it must stay longer than the high-emitter window (6 calendar
-- months, rs_rule_params). Change with remove_retention_policy / add_retention_policy.
SELECT add_retention_policy('rs_passes', drop_after => INTERVAL '2 years');
