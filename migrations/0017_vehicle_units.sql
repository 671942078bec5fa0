-- Units declared per vehicle at registration (docs/domain.md §5.6): per channel of a vehicle,
-- the unit its values are sent in. For a walk-through pollutant it applies to every reading
-- of the vehicle that declares no unit of its own for that pollutant (a reading's `units`
-- wins) and the value is converted as a reading's own declaration would be (298.15 K,
-- 101.325 kPa). For any other channel (an extra field of a portable instrument, kept in
-- `extra`) it is the unit the readings API reports with the series. Kept apart from
-- vehicle_accounts so that a change reloads no broker.
CREATE TABLE vehicle_declared_units (
    vehicle_id text NOT NULL REFERENCES vehicle_accounts (vehicle_id) ON DELETE CASCADE,
    channel    text NOT NULL CHECK (channel ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    unit       text NOT NULL CHECK (unit ~ '^\S{1,32}$'),
    set_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, channel),
    -- The gas units a walk-through reading may declare, and no volume fraction where there
    -- is no single molar mass (PM, TVOC): the same rule as a reading's own declaration.
    CHECK (channel NOT IN ('pm25', 'pm10', 'no2', 'o3', 'so2', 'co', 'tvoc')
           OR unit IN ('ppb', 'ppm', 'ug/m3', 'mg/m3')),
    CHECK (channel NOT IN ('pm25', 'pm10', 'tvoc') OR unit NOT IN ('ppb', 'ppm'))
);
