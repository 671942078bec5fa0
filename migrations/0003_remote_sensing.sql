-- Remote sensing (移动遥感监测车): one row per measured pass of a vehicle, the reference tables the
-- judgement reads (plate-colour codes, limits, validity gates, the high-emitter rule) and the
-- plates found to be high emitters. Portable PostgreSQL; TimescaleDB statements live in 0005.
-- Figures and their status: docs/domain.md §3.

-- One measured pass. The key is the measuring vehicle, the measurement time and the lane: a
-- redelivered pass inserts nothing.
CREATE TABLE rs_passes (
    vehicle_id         text NOT NULL,          -- the measuring (remote-sensing) vehicle
    ts                 timestamptz NOT NULL,   -- measurement time of the pass
    lane               smallint NOT NULL,      -- lane number as the instrument numbers it
    received_at        timestamptz NOT NULL,
    lat                double precision NOT NULL,   -- the measuring vehicle's position, WGS 84
    lon                double precision NOT NULL,
    site_id            text,                   -- monitoring site code when parked (e.g. A210112001)
    segment_id         bigint,                 -- road segment of the site; NULL: not within tolerance
    snap_distance_m    real,
    plate              text,                   -- normalised plate; NULL: not recognised
    plate_color_scheme text NOT NULL DEFAULT 'vendor',
    plate_color_code   text,                   -- the code as sent
    plate_colour       text,                   -- resolved through plate_colors; NULL: unknown code
    fuel_type          text NOT NULL,          -- gasoline | diesel | natural_gas | hybrid | electric | unknown
    speed_kmh          real,
    accel_ms2          real,
    slope_pct          real,                   -- road grade, 100 x rise / run; negative: downhill
    temp_c             real,
    rh_pct             real,
    pressure_kpa       real,
    wind_speed_ms      real,
    co2_pct            real,                   -- %
    co_pct             real,                   -- %
    hc_ppm             real,                   -- 10^-6
    no_ppm             real,                   -- 10^-6
    opacity_pct        real,                   -- smoke opacity, %
    ringelmann         real,                   -- Ringelmann blackness level
    images             text[] NOT NULL DEFAULT '{}',  -- image references as sent (paths or URLs)
    vsp_kw_t           real,                   -- vehicle specific power, kW/t; NULL: not computable
    valid              boolean NOT NULL,       -- judged against rs_gates at ingest
    invalid_reason     text,                   -- the first failing gate's reason code
    -- Per pollutant: NULL = not judged (invalid pass, not measured, or no limit for the fuel
    -- type at that time); true = over the limit effective at the pass's time.
    co_over            boolean,
    hc_over            boolean,
    no_over            boolean,
    opacity_over       boolean,
    ringelmann_over    boolean,
    extra              jsonb,                  -- unknown fields, kept as sent
    stored_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (vehicle_id, ts, lane),
    CHECK (valid = (invalid_reason IS NULL))
);
CREATE INDEX rs_passes_plate_ts ON rs_passes (plate, ts DESC) WHERE plate IS NOT NULL;
CREATE INDEX rs_passes_site_ts ON rs_passes (site_id, ts DESC) WHERE site_id IS NOT NULL;
CREATE INDEX rs_passes_segment_ts ON rs_passes (segment_id, ts DESC) WHERE segment_id IS NOT NULL;
CREATE INDEX rs_passes_ts ON rs_passes (ts DESC);

-- Plate-colour encodings differ by vendor (and JT/T 808 has its own): records name their scheme.
CREATE TABLE plate_colors (
    scheme  text NOT NULL,
    code    text NOT NULL,
    colour  text NOT NULL,
    source  text NOT NULL,
    PRIMARY KEY (scheme, code)
);
INSERT INTO plate_colors (scheme, code, colour, source) VALUES
  ('vendor', '0', 'blue',                'vendor report module CarNumberColor (docs/domain.md §3.6, SECONDARY)'),
  ('vendor', '1', 'yellow',              'vendor report module CarNumberColor (docs/domain.md §3.6, SECONDARY)'),
  ('vendor', '2', 'white',               'vendor report module CarNumberColor (docs/domain.md §3.6, SECONDARY)'),
  ('vendor', '3', 'black',               'vendor report module CarNumberColor (docs/domain.md §3.6, SECONDARY)'),
  ('vendor', '4', 'green',               'vendor report module CarNumberColor (docs/domain.md §3.6, SECONDARY)'),
  ('vendor', '5', 'civil_aviation_black', 'vendor report module CarNumberColor (docs/domain.md §3.6, SECONDARY)');

-- Remote-sensing limits per fuel type and pollutant, versioned by effective date (CST calendar
-- dates, end exclusive, as in table thresholds). A pass is over when value > limit_value.
CREATE TABLE rs_limits (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fuel_type      text NOT NULL,
    pollutant      text NOT NULL CHECK (pollutant IN ('co', 'hc', 'no', 'opacity', 'ringelmann')),
    limit_value    double precision NOT NULL CHECK (limit_value > 0),
    unit           text NOT NULL,           -- '%', 'ppm' or 'level', as the pass reports it
    source         text NOT NULL,
    confirmed      boolean NOT NULL DEFAULT false,  -- false: UNCONFIRMED default, check the source
    effective_from date NOT NULL,
    effective_to   date,
    note           text,
    CHECK (effective_to IS NULL OR effective_to > effective_from),
    UNIQUE (fuel_type, pollutant, effective_from)
);
INSERT INTO rs_limits (fuel_type, pollutant, limit_value, unit, source, confirmed, effective_from, note) VALUES
  ('diesel',   'opacity',    30,   '%',     'HJ 845-2017 / GB 3847-2018 remote-sensing limit, from memory (docs/domain.md §3.3 UNCONFIRMED)', false, '2017-07-27', 'verify against the official text'),
  ('diesel',   'ringelmann', 1,    'level', 'HJ 845-2017 Ringelmann level I, from memory (docs/domain.md §3.3 UNCONFIRMED)', false, '2017-07-27', 'over means darker than level 1'),
  ('diesel',   'no',         1500, 'ppm',   'HJ 845-2017 NO limit 1500 x 10^-6, from memory (docs/domain.md §3.3 UNCONFIRMED)', false, '2017-07-27', 'verify against the official text'),
  ('gasoline', 'co',         2.5,  '%',     'GB 18285-2018 remote-sensing CO 2.5 % (?), from memory (docs/domain.md §3.3 UNCONFIRMED)', false, '2019-05-01', 'local standards may be stricter'),
  ('gasoline', 'hc',         200,  'ppm',   'GB 18285-2018 remote-sensing HC 200 x 10^-6 (?), from memory (docs/domain.md §3.3 UNCONFIRMED)', false, '2019-05-01', 'local standards may be stricter'),
  ('gasoline', 'no',         1500, 'ppm',   'GB 18285-2018 remote-sensing NO 1500 x 10^-6 (?), from memory (docs/domain.md §3.3 UNCONFIRMED)', false, '2019-05-01', 'local standards may be stricter');

-- Conditions for a valid measurement. A gate applies to one fuel type or to 'all'; a pass whose
-- value is below min_value or above max_value (NULL: no bound), or missing, is invalid, and the
-- first failing gate (by id) names the reason.
CREATE TABLE rs_gates (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parameter   text NOT NULL CHECK (parameter IN
                ('vsp_kw_t', 'speed_kmh', 'accel_ms2', 'slope_pct', 'temp_c', 'rh_pct',
                 'pressure_kpa', 'wind_speed_ms')),
    min_value   double precision,
    max_value   double precision,
    applies_to  text NOT NULL DEFAULT 'all',  -- a fuel type, or 'all'
    reason      text NOT NULL,                -- stored as invalid_reason when the gate fails
    source      text NOT NULL,
    confirmed   boolean NOT NULL DEFAULT false,
    note        text,
    CHECK (min_value IS NOT NULL OR max_value IS NOT NULL),
    CHECK (min_value IS NULL OR max_value IS NULL OR min_value <= max_value)
);
INSERT INTO rs_gates (parameter, min_value, max_value, applies_to, reason, source, confirmed, note) VALUES
  ('slope_pct', 0, NULL, 'all', 'downhill',
   'renrendoc preview of the revised remote-sensing standard: testing on a downhill road is not allowed (docs/domain.md §3.1/§3.4, SECONDARY)', true, NULL),
  ('slope_pct', NULL, 26.79, 'all', 'slope_too_steep',
   'same source: site slope < 15 degrees, i.e. grade < tan(15 deg) = 26.79 % (docs/domain.md §3.4, SECONDARY)', true, NULL),
  ('temp_c', -20, 45, 'all', 'temperature_out_of_range',
   'same source: ambient temperature -20.0 to 45.0 C (docs/domain.md §3.1/§3.4, SECONDARY)', true, NULL),
  ('wind_speed_ms', NULL, 5, 'all', 'wind_too_strong',
   'typical Chinese practice, wind speed <= 5 m/s (docs/domain.md §3.4 UNCONFIRMED)', false, 'verify in the standard'),
  ('speed_kmh', 10, 110, 'all', 'speed_out_of_range',
   'vendor siting guide, mean speed 10-110 km/h (docs/domain.md §3.4 SECONDARY); used as a per-pass gate, UNCONFIRMED', false, 'verify in the standard'),
  ('accel_ms2', -1, 3, 'all', 'accel_out_of_range',
   'project default: vehicles slightly accelerating (docs/domain.md §3.4); range UNCONFIRMED', false, 'no source for the bounds; verify in the standard'),
  ('vsp_kw_t', 0, 20, 'gasoline', 'vsp_out_of_range',
   'typical Chinese practice, VSP 0-20 kW/t for gasoline (docs/domain.md §3.4 UNCONFIRMED)', false, 'Jimenez-Palacios VSP, intended for vehicles < 3.855 t');

-- The high-emitter rule (docs/domain.md §3.2, SECONDARY: the national rule as adopted by Beijing's
-- local standard): N or more consecutive valid exceedances of the same pollutant within M
-- calendar months.
CREATE TABLE rs_rule_params (
    name       text PRIMARY KEY CHECK (name IN ('consecutive_passes', 'window_months')),
    value      integer NOT NULL CHECK (value >= 1),
    source     text NOT NULL,
    confirmed  boolean NOT NULL DEFAULT false
);
INSERT INTO rs_rule_params (name, value, source, confirmed) VALUES
  ('consecutive_passes', 2, '在一个机动车检测周期的6个自然月内，连续两次及以上同种污染物超标 (docs/domain.md §3.2, SECONDARY)', false),
  ('window_months',      6, 'same rule: 6 calendar (natural) months (docs/domain.md §3.2, SECONDARY)', false);

-- Plates judged high emitters, one row per plate and pollutant, maintained by the ingest batch
-- that confirms them. ``evidence`` holds the passes of the latest confirmation.
CREATE TABLE rs_high_emitters (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plate              text NOT NULL,
    pollutant          text NOT NULL,
    fuel_type          text NOT NULL,
    plate_colour       text,
    first_confirmed_at timestamptz NOT NULL,   -- measurement time of the first confirming pass
    last_confirmed_at  timestamptz NOT NULL,   -- measurement time of the latest confirming pass
    confirmations      integer NOT NULL DEFAULT 1,
    last_value         double precision NOT NULL,
    limit_value        double precision NOT NULL,
    unit               text NOT NULL,
    source             text NOT NULL,
    evidence           jsonb NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (plate, pollutant)
);
CREATE INDEX rs_high_emitters_last ON rs_high_emitters (last_confirmed_at DESC, id DESC);
