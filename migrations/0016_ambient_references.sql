-- Ambient reference values (docs/domain.md §2.4, §2.5, §4.5, §4.6): the HJ 633 breakpoints the
-- street map's indicative AQI uses, and the receptor tier of emergency substances (the ambient
-- concentration a resident may breathe), beside their occupational and emergency tiers.
-- Portable PostgreSQL. Change a value with UPDATE; the API reads both tables on every request.

-- HJ 633 breakpoints: per standard, pollutant and averaging time, the concentration at each
-- IAQI. Units are those of the walk-through channels (µg/m³; CO mg/m³). A curve may stop below
-- IAQI 500 (SO2 1 h at 200, O3 8 h at 300): above its last point the sub-index is that point's
-- IAQI, as HJ 633-2026 rules. HJ 633-2012 Table 1 and HJ 633-2026 Table 3, verified against
-- the primary texts (docs/domain.md §2.4); 2026 changes only the PM10 and PM2.5 curves.
CREATE TABLE aqi_breakpoints (
    standard      text NOT NULL,             -- 'HJ 633-2012' or 'HJ 633-2026'
    pollutant     text NOT NULL,             -- walk-through channel: so2, no2, co, o3, pm10, pm25
    averaging     text NOT NULL CHECK (averaging IN ('1h', '8h', '24h')),
    iaqi          integer NOT NULL CHECK (iaqi BETWEEN 0 AND 500),
    concentration double precision NOT NULL CHECK (concentration >= 0),
    unit          text NOT NULL CHECK (unit IN ('ug/m3', 'mg/m3')),
    source        text NOT NULL,
    confirmed     boolean NOT NULL DEFAULT true,
    PRIMARY KEY (standard, pollutant, averaging, iaqi)
);

INSERT INTO aqi_breakpoints (standard, pollutant, averaging, iaqi, concentration, unit, source)
SELECT s.standard, g.pollutant, g.averaging, p.iaqi, p.concentration, g.unit, s.source
FROM (VALUES
    ('so2', '24h', 'ug/m3', ARRAY[0, 50, 150, 475, 800, 1600, 2100, 2620]),
    ('so2', '1h', 'ug/m3', ARRAY[0, 150, 500, 650, 800]),
    ('no2', '24h', 'ug/m3', ARRAY[0, 40, 80, 180, 280, 565, 750, 940]),
    ('no2', '1h', 'ug/m3', ARRAY[0, 100, 200, 700, 1200, 2340, 3090, 3840]),
    ('co', '24h', 'mg/m3', ARRAY[0, 2, 4, 14, 24, 36, 48, 60]),
    ('co', '1h', 'mg/m3', ARRAY[0, 5, 10, 35, 60, 90, 120, 150]),
    ('o3', '1h', 'ug/m3', ARRAY[0, 160, 200, 300, 400, 800, 1000, 1200]),
    ('o3', '8h', 'ug/m3', ARRAY[0, 100, 160, 215, 265, 800])
) AS g (pollutant, averaging, unit, points)
CROSS JOIN (VALUES ('HJ 633-2012', 'HJ 633-2012 Table 1'), ('HJ 633-2026', 'HJ 633-2026 Table 3'))
    AS s (standard, source)
CROSS JOIN LATERAL unnest(ARRAY[0, 50, 100, 150, 200, 300, 400, 500], g.points)
    AS p (iaqi, concentration)
WHERE p.concentration IS NOT NULL;

INSERT INTO aqi_breakpoints (standard, pollutant, averaging, iaqi, concentration, unit, source)
SELECT g.standard, g.pollutant, '24h', p.iaqi, p.concentration, 'ug/m3', g.source
FROM (VALUES
    ('HJ 633-2012', 'pm10', 'HJ 633-2012 Table 1', ARRAY[0, 50, 150, 250, 350, 420, 500, 600]),
    ('HJ 633-2012', 'pm25', 'HJ 633-2012 Table 1', ARRAY[0, 35, 75, 115, 150, 250, 350, 500]),
    ('HJ 633-2026', 'pm10', 'HJ 633-2026 Table 3', ARRAY[0, 50, 120, 250, 350, 420, 500, 600]),
    ('HJ 633-2026', 'pm25', 'HJ 633-2026 Table 3', ARRAY[0, 35, 60, 115, 150, 250, 350, 500])
) AS g (standard, pollutant, source, points)
CROSS JOIN LATERAL unnest(ARRAY[0, 50, 100, 150, 200, 300, 400, 500], g.points)
    AS p (iaqi, concentration);

-- Receptor tiers: the ambient reference value of a substance at sensitive receptors
-- (residential areas). They take no part in alerting (an emergency alert is about exposure
-- near the source); the incident assessment compares readings with them (share of the
-- reference C/S) beside the other tiers. One per substance by convention, tier 'ambient'.
ALTER TABLE emergency_tiers ADD COLUMN receptor boolean NOT NULL DEFAULT false;

-- GB 3095-2026 Table 1, Grade II 1-hour limits of the transitional stage (2026-03-01 to
-- 2030-12-31), verified (docs/domain.md §2.2); HJ 2.2-2018 Appendix D 1-hour reference
-- concentrations as recalled, unconfirmed (docs/domain.md §4.5).
INSERT INTO emergency_tiers
    (substance, tier, limit_value, unit, averaging, severity, source, confirmed, note, receptor)
VALUES
  ('so2', 'ambient', 500, 'ug/m3', '1h', 'info', 'GB 3095-2026 Grade II, 1 h (transitional)', true,
   'final stage from 2031-01-01: 150 ug/m3 (docs/domain.md §2.2)', true),
  ('no2', 'ambient', 200, 'ug/m3', '1h', 'info', 'GB 3095-2026 Grade II, 1 h', true, NULL, true),
  ('co', 'ambient', 10, 'mg/m3', '1h', 'info', 'GB 3095-2026 Grade II, 1 h', true, NULL, true),
  ('o3', 'ambient', 200, 'ug/m3', '1h', 'info', 'GB 3095-2026 Grade II, 1 h', true, NULL, true),
  ('h2s', 'ambient', 10, 'ug/m3', '1h', 'info', 'HJ 2.2-2018 Appendix D, 1 h', false,
   'UNCONFIRMED (docs/domain.md §4.5): recalled, check the official text', true),
  ('nh3', 'ambient', 200, 'ug/m3', '1h', 'info', 'HJ 2.2-2018 Appendix D, 1 h', false,
   'UNCONFIRMED (docs/domain.md §4.5): recalled, check the official text', true),
  ('hcl', 'ambient', 50, 'ug/m3', '1h', 'info', 'HJ 2.2-2018 Appendix D, 1 h', false,
   'UNCONFIRMED (docs/domain.md §4.5): recalled, check the official text', true),
  ('cl2', 'ambient', 100, 'ug/m3', '1h', 'info', 'HJ 2.2-2018 Appendix D, 1 h', false,
   'UNCONFIRMED (docs/domain.md §4.5): recalled, check the official text', true),
  ('benzene', 'ambient', 110, 'ug/m3', '1h', 'info', 'HJ 2.2-2018 Appendix D, 1 h', false,
   'UNCONFIRMED (docs/domain.md §4.5): recalled, check the official text', true);
