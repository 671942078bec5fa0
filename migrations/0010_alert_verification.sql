-- Alerts an officer can trust (docs/adr/0009): honest rule names and the ratio C/S, one alert per
-- road stretch with the rules that fired, suspected → confirmed, closing by verification, stale
-- marking; the TVOC trigger and the GB 3095-2012 dates corrected (docs/domain.md §2.1, §5.5).
-- Portable PostgreSQL, with or without TimescaleDB. Idempotent statements only.

-- C/S (占标率), or pass mean / (factor x background) for a hotspot. (C - S)/S stays in
-- peak_multiple, now NULL where no valid average was compared (docs/domain.md §2.3).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS peak_ratio double precision;
ALTER TABLE alerts ALTER COLUMN peak_multiple DROP NOT NULL;
-- The rules that fired on this episode ('reference_ratio', 'hotspot', 'fixed_point_trigger', ...).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS rules text[] NOT NULL DEFAULT '{}';
-- The road segments of the stretch the episode covers.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS segments bigint[] NOT NULL DEFAULT '{}';
-- 'suspected' after one drive, 'confirmed' after a repeat drive or a fixed-point re-measurement.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS confidence text NOT NULL DEFAULT 'confirmed';
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS confirmed_at timestamptz;
-- Set while nobody has re-driven an open episode for the configured time; cleared on a new pass.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS stale_since timestamptz;
-- How a resolved episode was closed: 'verified' (clean passes), 'officer' or 'quiet' (silence,
-- kept only for kinds whose alerts may close so: emergency).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolution text;
-- The later passes over the stretch that came back clean, and before/after statistics.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS verification jsonb NOT NULL DEFAULT '{}';

UPDATE alerts SET peak_ratio = peak_multiple + 1 WHERE peak_ratio IS NULL;

-- Walk-through episodes raised before this migration: the 'limit' rule compared a pass mean with
-- a 1 h or 24 h limit, an indicator and never a legal exceedance. Keep their history under the
-- honest name; their stretch is their one segment.
UPDATE alerts SET rule = 'reference_ratio', peak_multiple = NULL
    WHERE kind = 'walkthrough' AND rule = 'limit';
UPDATE alerts SET rules = ARRAY[rule] WHERE rules = '{}';
UPDATE alerts SET segments = ARRAY[segment_id]
    WHERE segments = '{}' AND segment_id IS NOT NULL AND kind = 'walkthrough';
UPDATE alerts SET resolution = CASE WHEN resolved_by = 'system' THEN 'quiet' ELSE 'officer' END
    WHERE status = 'resolved' AND resolution IS NULL;
UPDATE alerts SET confidence = 'suspected'
    WHERE kind = 'walkthrough' AND status <> 'resolved' AND confirmed_at IS NULL
      AND cardinality(vehicles) < 2;

CREATE INDEX IF NOT EXISTS alerts_open_segments ON alerts USING gin (segments)
    WHERE status <> 'resolved';

-- TVOC 400 ug/m3 is the Xiamen local standard's trigger for a 10-minute fixed-point measurement,
-- not a national limit (docs/domain.md §5.5): tier 'trigger', never a 'limit'.
UPDATE thresholds
    SET tier = 'trigger',
        source = 'DB3502/T 153-2024 (Xiamen local standard): VOCs above 400 ug/m3 trigger a '
                 || '10-minute fixed-point measurement (docs/domain.md §5.5)',
        note = 'local trigger for a fixed-point measurement, not a national limit (no national '
               || 'ambient TVOC limit exists); SECONDARY source; PID TVOC is isobutylene-equivalent'
    WHERE kind = 'walkthrough' AND pollutant = 'tvoc' AND tier = 'limit' AND limit_value = 400
      AND source LIKE 'DB3502/T 153%';

-- GB 3095-2012 was issued 2012-02-29 and applied nationwide from 2016-01-01 (docs/domain.md §2.1).
UPDATE thresholds SET effective_from = DATE '2016-01-01'
    WHERE kind = 'walkthrough' AND source LIKE 'GB 3095-2012%'
      AND effective_from = DATE '2012-02-29';

-- Each vehicle's background, the low percentile of its own recent valid readings
-- (docs/domain.md §5.2), as last computed for the window ending at `at`. Kept here so every
-- worker reads the same value; recomputed from walkthrough_readings at most every
-- TELEMETRY_HOTSPOT_REFRESH_S of measurement time per vehicle, and never moved backwards (a
-- late pass is judged against a window computed for its own time, not stored).
CREATE TABLE IF NOT EXISTS walkthrough_backgrounds (
    vehicle_id  text PRIMARY KEY,
    at          timestamptz NOT NULL,
    window_s    double precision NOT NULL,
    percentile  double precision NOT NULL,
    min_samples integer NOT NULL,
    pollutants  text[] NOT NULL,
    levels      double precision[] NOT NULL,   -- aligned with pollutants; NULL: too few values
    updated_at  timestamptz NOT NULL DEFAULT now()
);
