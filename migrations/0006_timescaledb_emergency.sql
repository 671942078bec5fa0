-- requires: timescaledb
-- Applied only when the timescaledb extension is available; see docs/adr/0003.
-- Emergency readings are long form (one row per substance) and arrive in bursts around
-- incidents: chunks of one day keep an incident's readings in a handful of chunks.
SELECT create_hypertable('emergency_readings', by_range('ts', INTERVAL '1 day'),
                         migrate_data => true);

-- Compress segmented by vehicle, newest first; only chunks older than the oldest reading the
-- ingest path accepts (TELEMETRY_MAX_AGE_S, 7 days by default) so late data never lands in a
-- compressed chunk. No retention policy: incident records are kept.
ALTER TABLE emergency_readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle_id',
    timescaledb.compress_orderby = 'ts DESC, substance'
);
SELECT add_compression_policy('emergency_readings', compress_after => INTERVAL '8 days');
