-- Emergency monitoring (应急监测车): incidents opened by duty officers, gas readings in long form
-- (one row per vehicle, measurement time and substance), the substances the service knows a
-- molar mass for, and the tiered thresholds per substance. Portable PostgreSQL; TimescaleDB
-- statements live in 0006. Figures and their status: docs/domain.md §4.

-- Substances: the molar mass turns ppm into mg/m3 (mg/m3 = ppm x M / 24.45 at 25 °C and
-- 101.325 kPa). A substance without a molar mass is stored in the unit it was sent in and never
-- converted. Names are lower case; vehicles may send any alias (matched case-insensitively).
CREATE TABLE substances (
    name             text PRIMARY KEY,
    formula          text,
    molar_mass_g_mol double precision CHECK (molar_mass_g_mol IS NULL OR molar_mass_g_mol > 0),
    aliases          text[] NOT NULL DEFAULT '{}',
    source           text NOT NULL,
    note             text
);

INSERT INTO substances (name, formula, molar_mass_g_mol, aliases, source, note) VALUES
  ('h2s', 'H2S', 34.08, '{hydrogen sulfide,hydrogen_sulfide,硫化氢}', 'standard atomic weights (IUPAC)', NULL),
  ('nh3', 'NH3', 17.03, '{ammonia,氨,氨气}', 'standard atomic weights (IUPAC)', NULL),
  ('cl2', 'Cl2', 70.90, '{chlorine,氯气}', 'standard atomic weights (IUPAC)', NULL),
  ('hcl', 'HCl', 36.46, '{hydrogen chloride,hydrogen_chloride,氯化氢}', 'standard atomic weights (IUPAC)', NULL),
  ('so2', 'SO2', 64.07, '{sulfur dioxide,sulphur dioxide,二氧化硫}', 'standard atomic weights (IUPAC)', NULL),
  ('no2', 'NO2', 46.01, '{nitrogen dioxide,二氧化氮}', 'standard atomic weights (IUPAC)', NULL),
  ('co', 'CO', 28.01, '{carbon monoxide,一氧化碳}', 'standard atomic weights (IUPAC)', NULL),
  ('benzene', 'C6H6', 78.11, '{c6h6,苯}', 'standard atomic weights (IUPAC)', NULL),
  ('no', 'NO', 30.01, '{nitric oxide,一氧化氮}', 'standard atomic weights (IUPAC)', NULL),
  ('o3', 'O3', 48.00, '{ozone,臭氧}', 'standard atomic weights (IUPAC)', NULL),
  ('hcn', 'HCN', 27.03, '{hydrogen cyanide,氰化氢}', 'standard atomic weights (IUPAC)', NULL),
  ('hf', 'HF', 20.01, '{hydrogen fluoride,氟化氢}', 'standard atomic weights (IUPAC)', NULL),
  ('ch4', 'CH4', 16.04, '{methane,甲烷}', 'standard atomic weights (IUPAC)', NULL),
  ('toluene', 'C7H8', 92.14, '{甲苯}', 'standard atomic weights (IUPAC)', NULL),
  ('formaldehyde', 'CH2O', 30.03, '{hcho,甲醛}', 'standard atomic weights (IUPAC)', NULL),
  ('voc', NULL, NULL, '{vocs,tvoc,pid}',
   'docs/domain.md §4.3 notes: PID sensors (10.6 eV lamp) report isobutylene-equivalent ppm',
   'isobutylene-equivalent (PID): not converted to a specific compound, which would need a response factor');

-- Incidents: a release at a point, from started_at until closed_at. Emergency readings inside
-- the radius and the window belong to it.
CREATE TABLE incidents (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 text NOT NULL,
    lat                  double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon                  double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    started_at           timestamptz NOT NULL,
    closed_at            timestamptz,
    radius_m             double precision NOT NULL DEFAULT 5000 CHECK (radius_m > 0),
    suspected_substances text[] NOT NULL DEFAULT '{}',
    opened_by            text NOT NULL,
    closed_by            text,
    note                 text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (closed_at IS NULL OR closed_at >= started_at),
    CHECK ((closed_at IS NULL) = (closed_by IS NULL))
);
CREATE INDEX incidents_open ON incidents (started_at) WHERE closed_at IS NULL;
CREATE INDEX incidents_window ON incidents (started_at, closed_at);

-- Emergency readings, long form: one row per vehicle, measurement time and substance.
CREATE TABLE emergency_readings (
    vehicle_id    text NOT NULL,
    ts            timestamptz NOT NULL,
    substance     text NOT NULL,               -- lower case; an alias is stored under its substance
    value         double precision NOT NULL,   -- as sent
    unit          text NOT NULL CHECK (unit IN ('ppm', 'ppb', 'mg/m3', 'ug/m3')),  -- as sent
    value_ppm     double precision,            -- NULL: not convertible (no molar mass)
    value_mgm3    double precision,            -- NULL: not convertible (no molar mass)
    conversion    text NOT NULL,               -- how value_ppm / value_mgm3 were obtained, or why not
    sensor        text,                        -- PID, EC, IR, ... as sent
    lat           double precision NOT NULL,
    lon           double precision NOT NULL,
    wind_speed_ms real,
    wind_dir_deg  real,
    temp_c        real,
    pressure_kpa  real,
    incident_id   bigint REFERENCES incidents (id),  -- NULL: inside no incident
    distance_m    double precision,            -- from the incident's source
    bearing_deg   double precision,            -- from the incident's source, clockwise from north
    extra         jsonb,                       -- unknown fields of the record, kept as sent
    received_at   timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (vehicle_id, ts, substance)
);
CREATE INDEX emergency_readings_incident ON emergency_readings (incident_id, ts DESC)
    WHERE incident_id IS NOT NULL;
CREATE INDEX emergency_readings_ts ON emergency_readings (ts DESC);

-- Tiered thresholds per substance. A reading is assigned the highest tier it exceeds, tiers being
-- ordered by concentration; each tier crossed is its own alert episode (rule 'tier:<tier>'), so a
-- higher tier opening is the escalation. The severity used never falls as the tier rises (a
-- lower tier's severity carries upwards). Change a value with UPDATE; add one with INSERT.
CREATE TABLE emergency_tiers (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    substance   text NOT NULL REFERENCES substances (name),
    tier        text NOT NULL,          -- occupational, rel, erpg1, erpg2, erpg3, aegl2, eegl, idlh, ...
    limit_value double precision NOT NULL CHECK (limit_value > 0),
    unit        text NOT NULL CHECK (unit IN ('ppm', 'ppb', 'mg/m3', 'ug/m3')),
    averaging   text NOT NULL,          -- the exposure time the value is defined for
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    source      text NOT NULL,          -- where the value comes from
    confirmed   boolean NOT NULL,       -- false: UNCONFIRMED in docs/domain.md §4.3, check the source
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (substance, tier)
);

-- ✔ values: CDC/NIOSH IDLH documentation pages (cdc.gov/niosh/idlh/7783064.html, 7664417.html,
-- 7782505.html) and the Minnesota Dept. of Agriculture page, as docs/domain.md §4.3 records them.
-- Every GBZ 2.1-2019 figure is from memory (two public code sources contradict each other).
INSERT INTO emergency_tiers (substance, tier, limit_value, unit, averaging, severity, source, confirmed, note) VALUES
  ('h2s', 'erpg1', 0.1, 'ppm', '60min', 'info', 'AIHA ERPG-1 (60 min)', true, NULL),
  ('h2s', 'occupational', 10, 'mg/m3', 'MAC', 'info', 'GBZ 2.1-2019 MAC', false,
   'UNCONFIRMED (docs/domain.md §4.3): from memory; another code source gives PC-TWA 10 / PC-STEL 15'),
  ('h2s', 'rel', 10, 'ppm', '10min ceiling', 'info', 'NIOSH REL, 10-min ceiling', true, NULL),
  ('h2s', 'erpg2', 30, 'ppm', '60min', 'warning', 'AIHA ERPG-2 (60 min)', true, NULL),
  ('h2s', 'erpg3', 100, 'ppm', '60min', 'critical', 'AIHA ERPG-3 (60 min)', true,
   'NIOSH IDLH: original 300 ppm (confirmed), current 100 ppm (UNCONFIRMED), i.e. the same as ERPG-3'),
  ('nh3', 'erpg1', 25, 'ppm', '60min', 'info', 'AIHA ERPG-1 (60 min)', true, NULL),
  ('nh3', 'rel', 35, 'ppm', 'STEL 15min', 'info', 'NIOSH REL, STEL (TWA 25 ppm)', true, NULL),
  ('nh3', 'occupational', 30, 'mg/m3', 'PC-STEL', 'info', 'GBZ 2.1-2019 PC-STEL (PC-TWA 20)', false,
   'UNCONFIRMED (docs/domain.md §4.3): from memory'),
  ('nh3', 'erpg2', 200, 'ppm', '60min', 'warning', 'AIHA ERPG-2 (60 min)', true, NULL),
  ('nh3', 'idlh', 300, 'ppm', '30min', 'critical', 'NIOSH IDLH (original 500 ppm)', true, NULL),
  ('nh3', 'erpg3', 1000, 'ppm', '60min', 'critical', 'AIHA ERPG-3 (60 min)', true, NULL),
  ('cl2', 'occupational', 1, 'mg/m3', 'MAC', 'info', 'GBZ 2.1-2019 MAC', false,
   'UNCONFIRMED (docs/domain.md §4.3): from memory'),
  ('cl2', 'rel', 0.5, 'ppm', '15min ceiling', 'info', 'NIOSH REL, 15-min ceiling', true, NULL),
  ('cl2', 'eegl', 3, 'ppm', '60min', 'warning', 'NRC 1-h EEGL', true, NULL),
  ('cl2', 'idlh', 10, 'ppm', '30min', 'critical', 'NIOSH IDLH (current; original 30 ppm confirmed)', false,
   'UNCONFIRMED (docs/domain.md §4.3): the current value 10 ppm; the original 30 ppm is confirmed'),
  ('hcl', 'aegl1', 1.8, 'ppm', '10min', 'info', 'AEGL-1, 10 min (2.68 mg/m3 in a public config)', false,
   'UNCONFIRMED (docs/domain.md §4.3): consistent with EPA final AEGLs, not checked against the EPA table'),
  ('hcl', 'occupational', 7.5, 'mg/m3', 'MAC', 'info', 'GBZ 2.1-2019 MAC', false,
   'UNCONFIRMED (docs/domain.md §4.3): from memory'),
  ('hcl', 'idlh', 50, 'ppm', '30min', 'critical', 'NIOSH IDLH', false,
   'UNCONFIRMED (docs/domain.md §4.3)'),
  ('hcl', 'aegl2', 100, 'ppm', '10min', 'warning', 'AEGL-2, 10 min (149.12 mg/m3 in a public config)', false,
   'UNCONFIRMED (docs/domain.md §4.3); above the IDLH, so it is alerted as critical'),
  ('hcl', 'aegl3', 620, 'ppm', '10min', 'critical', 'AEGL-3, 10 min (924.55 mg/m3 in a public config)', false,
   'UNCONFIRMED (docs/domain.md §4.3)'),
  ('benzene', 'occupational', 10, 'mg/m3', 'PC-STEL', 'info', 'GBZ 2.1-2019 PC-STEL (PC-TWA 6)', false,
   'UNCONFIRMED (docs/domain.md §4.3): one code source says amendment No. 1 changed PC-TWA / PC-STEL to 3 / 6'),
  ('benzene', 'idlh', 500, 'ppm', '30min', 'critical', 'NIOSH IDLH', false, 'UNCONFIRMED (docs/domain.md §4.3)'),
  ('co', 'occupational', 30, 'mg/m3', 'PC-STEL', 'info', 'GBZ 2.1-2019 PC-STEL, non-plateau (PC-TWA 20)', false,
   'UNCONFIRMED (docs/domain.md §4.3): from memory'),
  ('co', 'idlh', 1200, 'ppm', '30min', 'critical', 'NIOSH IDLH', false, 'UNCONFIRMED (docs/domain.md §4.3)'),
  ('so2', 'occupational', 10, 'mg/m3', 'PC-STEL', 'info', 'GBZ 2.1-2019 PC-STEL (PC-TWA 5)', false,
   'UNCONFIRMED (docs/domain.md §4.3): from memory'),
  ('so2', 'idlh', 100, 'ppm', '30min', 'critical', 'NIOSH IDLH', false, 'UNCONFIRMED (docs/domain.md §4.3)'),
  ('no2', 'occupational', 10, 'mg/m3', 'PC-STEL', 'info', 'GBZ 2.1-2019 PC-STEL (PC-TWA 5)', false,
   'UNCONFIRMED (docs/domain.md §4.3): from memory'),
  ('no2', 'idlh', 13, 'ppm', '30min', 'critical', 'NIOSH IDLH', false,
   'UNCONFIRMED (docs/domain.md §4.3 gives 13-20 ppm); the lower value is seeded');
