-- Sensor faults of walk-through readings (docs/domain.md §5.7): the first fault found on a
-- reading ('flatline', 'range_limit' or 'step') and the pollutants it concerns. Those channels
-- are used neither by detection nor by the street map; the reading is kept as sent. NULL: no
-- fault. Portable PostgreSQL, with or without TimescaleDB: nullable columns without a default
-- or a constraint, which a hypertable with compression enabled accepts. The data-quality
-- report reads a window by time (index walkthrough_readings_ts).

ALTER TABLE walkthrough_readings
    ADD COLUMN fault text,
    ADD COLUMN fault_pollutants text[];
