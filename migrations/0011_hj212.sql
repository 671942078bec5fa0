-- HJ 212-2017 analysers (docs/adr/0010-hj212.md): a vehicle's registration may name the MN
-- its analyser sends, the analyser's PW, how to read it (tolerances, position fields, time
-- zone, units) and, for a parked site, its fixed position. Interval data (minute, hour and day
-- values) are kept as what they are, and every deviation accepted from an analyser is counted.
-- Portable PostgreSQL, with or without TimescaleDB.

ALTER TABLE vehicle_accounts
    -- The analyser's unique id (MN); one analyser belongs to one vehicle.
    ADD COLUMN hj212_mn text UNIQUE CHECK (hj212_mn ~ '^[0-9A-Za-z_-]{1,24}$'),
    -- The PW the analyser sends in clear text in every packet; NULL: not checked. Kept as sent
    -- (not hashed): see the ADR.
    ADD COLUMN hj212_pw text CHECK (hj212_pw ~ '^[!-~]{6}$'),
    -- {"tolerate": [...], "position_fields": [[lon, lat], ...], "timezone": "...",
    --  "units": {"a21026": "ug/m3"}}; empty: strict, default fields, China Standard Time.
    ADD COLUMN hj212_options jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- A parked site's registered position (WGS 84 degrees).
    ADD COLUMN site_lat double precision CHECK (site_lat BETWEEN -90 AND 90),
    ADD COLUMN site_lon double precision CHECK (site_lon BETWEEN -180 AND 180),
    ADD CONSTRAINT vehicle_accounts_site_both CHECK ((site_lat IS NULL) = (site_lon IS NULL));

-- Minute (2051), hour (2061) and day (2031) data: one row per factor and interval. begin_time is
-- the interval's start (DataTime of those commands); values of factors with a channel are in
-- the channel's unit (unit), the others as sent (unit NULL).
CREATE TABLE hj212_interval_data (
    vehicle_id  text NOT NULL,
    mn          text NOT NULL,
    cn          text NOT NULL CHECK (cn IN ('2051', '2061', '2031')),
    begin_time  timestamptz NOT NULL,
    factor      text NOT NULL,
    min_value   double precision,
    avg_value   double precision,
    max_value   double precision,
    cou_value   double precision,
    flag        text,
    unit        text,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (vehicle_id, cn, begin_time, factor)
);

-- Deviations from the standard accepted from an analyser under its tolerances, counted per
-- analyser so that the agency can take them up with the vendor.
CREATE TABLE hj212_deviations (
    mn         text NOT NULL,
    deviation  text NOT NULL,
    vehicle_id text NOT NULL,
    packets    bigint NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mn, deviation)
);
