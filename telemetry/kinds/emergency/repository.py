"""Incidents, emergency readings, substances and tiers: every SQL statement of the emergency kind.

Readings are written like walk-through readings: COPY into a temporary staging table, then
``INSERT … ON CONFLICT DO NOTHING RETURNING``, so a redelivered message changes nothing and only
new rows reach detection.

Opening or closing an incident and an ingest batch's look-up of incidents serialize on one
advisory lock (exclusive for the officer's change, shared for ingest batches): an incident
opened while a batch is in flight is seen by every later batch, and the batches that were in
flight have committed before the new incident attaches the readings already stored in its
radius and window. So no reading falls between the two.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from telemetry.columns import FloatArray, IntArray
from telemetry.errors import ConflictError, NotFoundError, ValidationError
from telemetry.geo import EARTH_RADIUS_M
from telemetry.kinds.contract import Kind
from telemetry.kinds.emergency.detection import MASS_UNITS
from telemetry.store import audit
from telemetry.store.audit import Actor
from telemetry.store.errors import constraint_errors
from telemetry.store.staging import Staging, first_of_each_key, json_text

__all__ = [
    "IncidentSet",
    "ReadingRows",
    "assign_readings",
    "close_incident",
    "create_tier",
    "get_incident",
    "incident_readings",
    "incident_wind",
    "incidents_during",
    "insert_emergency",
    "insert_incident",
    "list_incidents",
    "list_substances",
    "list_tiers",
    "lock_incidents",
    "unassigned_readings_near",
    "update_tier",
]

_STAGING = "emergency_staging"
_LOCK_KEY = 0x0E3E_76E1  # incidents vs. ingest batches (see the module docstring)
_OPEN_END_US = np.iinfo(np.int64).max


def _us(column: str) -> str:
    return f"TIMESTAMPTZ 'epoch' + {column} * INTERVAL '1 microsecond'"


def _epoch_us(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


# --- substances and tiers ------------------------------------------------------------------


async def list_substances(conn: asyncpg.Pool | asyncpg.Connection) -> list[dict[str, Any]]:
    """Every row of ``substances``, by name."""
    rows = await conn.fetch(
        "SELECT name, formula, molar_mass_g_mol, aliases, source, note FROM substances "
        "ORDER BY name"
    )
    return [dict(r) for r in rows]


async def list_tiers(conn: asyncpg.Pool | asyncpg.Connection) -> list[dict[str, Any]]:
    """Every row of ``emergency_tiers``, by substance and id."""
    rows = await conn.fetch(
        "SELECT id, substance, tier, limit_value, unit, averaging, severity, source, confirmed, "
        "note, receptor FROM emergency_tiers ORDER BY substance, id"
    )
    return [dict(r) for r in rows]


_TIER_COLUMNS = (
    "id, substance, tier, limit_value, unit, averaging, severity, source, confirmed, note, receptor"
)


def _basis(unit: str) -> str:
    return "mass (mg/m3, ug/m3)" if unit in MASS_UNITS else "volume (ppm, ppb)"


async def _lock_substance(conn: asyncpg.Connection, substance: str) -> None:
    """Serialize tier changes of one substance: the basis check reads its other tiers."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('emergency_tiers/' || $1, 0))", substance
    )


async def _check_basis(
    conn: asyncpg.Connection, substance: str, unit: str, *, other_than: int | None = None
) -> None:
    """Without a molar mass nothing is converted, so the tiers of such a substance can only be
    ordered and compared with readings when they share one basis (volume or mass)."""
    molar_mass = await conn.fetchval(
        "SELECT molar_mass_g_mol FROM substances WHERE name = $1", substance
    )
    if molar_mass is not None:
        return
    units = await conn.fetch(
        "SELECT id, tier, unit FROM emergency_tiers "
        "WHERE substance = $1 AND ($2::integer IS NULL OR id <> $2)",
        substance,
        other_than,
    )
    for row in units:
        if (row["unit"] in MASS_UNITS) != (unit in MASS_UNITS):
            raise ValidationError(
                f"{substance} has no molar mass, so its tiers cannot mix units: tier "
                f"{row['tier']!r} is in {row['unit']}, so {unit} ({_basis(unit)}) is not "
                f"comparable with it; use {_basis(row['unit'])}"
            )


async def create_tier(
    pool: asyncpg.Pool,
    *,
    substance: str,
    tier: str,
    limit_value: float,
    unit: str,
    averaging: str,
    severity: str,
    source: str,
    confirmed: bool,
    note: str | None = None,
    receptor: bool = False,
    by: Actor,
) -> dict[str, Any]:
    """Add a tier to a known substance (its name or an alias, any case) and return the row,
    stored under the substance's name; audited as made ``by``.

    ``unit`` is one of :data:`~telemetry.kinds.emergency.detection.UNITS` and ``severity`` one of
    :data:`~telemetry.kinds.emergency.detection.SEVERITIES`; the tier takes its place among the
    substance's tiers by concentration, whatever the order of adding. For a substance without
    a molar mass every tier must be in the same basis (volume or mass) as the others.

    The values are checked by :func:`~telemetry.kinds.emergency.checks.check_tier` first.
    Raises :class:`ValidationError` for an unknown substance or a unit of another basis, and
    :class:`ConflictError` when the substance already has a tier of that name.
    """
    async with pool.acquire() as conn, conn.transaction():
        name = await conn.fetchval(
            "SELECT name FROM substances WHERE name = lower($1) "
            "OR EXISTS (SELECT FROM unnest(aliases) AS a WHERE lower(trim(a)) = lower($1)) "
            "ORDER BY name <> lower($1), name LIMIT 1",
            substance.strip(),
        )
        if name is None:
            raise ValidationError(f"unknown substance {substance!r}")
        await _lock_substance(conn, name)
        await _check_basis(conn, name, unit)
        with constraint_errors(conflict=f"{name} already has a tier {tier!r}"):
            created = await conn.fetchrow(
                "INSERT INTO emergency_tiers (substance, tier, limit_value, unit, averaging, "
                "severity, source, confirmed, note, receptor) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                f"RETURNING {_TIER_COLUMNS}",
                name,
                tier,
                float(limit_value),
                unit,
                averaging,
                severity,
                source,
                confirmed,
                note,
                receptor,
            )
        assert created is not None
        await audit.record(
            conn,
            by,
            action="emergency_tier.create",
            entity="emergency_tier",
            entity_id=created["id"],
            before=None,
            after=created,
        )
    return dict(created)


async def update_tier(
    pool: asyncpg.Pool,
    tier_id: int,
    *,
    limit_value: float,
    unit: str,
    severity: str,
    source: str,
    confirmed: bool,
    note: str | None = None,
    by: Actor,
) -> dict[str, Any]:
    """Replace a tier's limit, unit, severity, source, confirmed flag and note; return the row.
    The substance, the tier's name and its averaging time stay. Audited as made ``by``.

    Raises :class:`NotFoundError` for an unknown id and :class:`ValidationError` for a unit of
    another basis (as :func:`create_tier`).
    """
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow(
            f"SELECT {_TIER_COLUMNS} FROM emergency_tiers WHERE id = $1", tier_id
        )
        if before is None:
            raise NotFoundError(f"no emergency tier {tier_id}")
        substance = before["substance"]
        await _lock_substance(conn, substance)
        await _check_basis(conn, substance, unit, other_than=tier_id)
        with constraint_errors():
            row = await conn.fetchrow(
                "UPDATE emergency_tiers SET limit_value = $2, unit = $3, severity = $4, "
                f"source = $5, confirmed = $6, note = $7 WHERE id = $1 RETURNING {_TIER_COLUMNS}",
                tier_id,
                float(limit_value),
                unit,
                severity,
                source,
                confirmed,
                note,
            )
        if row is None:
            raise NotFoundError(f"no emergency tier {tier_id}")
        await audit.record(
            conn,
            by,
            action="emergency_tier.update",
            entity="emergency_tier",
            entity_id=tier_id,
            before=before,
            after=row,
        )
    return dict(row)


# --- readings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadingRows:
    """Emergency readings in long form, one element per (vehicle, ts, substance).

    ``incident_id`` is -1 where the reading belongs to no incident (then ``distance_m`` and
    ``bearing_deg`` are NaN); NaN in an optional number is stored as NULL; ``extra`` holds the
    record's unknown fields (dict or None).
    """

    vehicle_id: npt.NDArray[np.object_]
    ts_us: IntArray
    received_us: IntArray
    substance: npt.NDArray[np.object_]
    value: FloatArray
    unit: npt.NDArray[np.object_]
    value_ppm: FloatArray
    value_mgm3: FloatArray
    conversion: npt.NDArray[np.object_]
    sensor: npt.NDArray[np.object_]  # str | None
    lat: FloatArray
    lon: FloatArray
    wind_speed_ms: FloatArray
    wind_dir_deg: FloatArray
    temp_c: FloatArray
    pressure_kpa: FloatArray
    incident_id: IntArray
    distance_m: FloatArray
    bearing_deg: FloatArray
    extra: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])


_FLOATS = (
    "value",
    "value_ppm",
    "value_mgm3",
    "lat",
    "lon",
    "wind_speed_ms",
    "wind_dir_deg",
    "temp_c",
    "pressure_kpa",
    "distance_m",
    "bearing_deg",
)
_NULLABLE = frozenset(_FLOATS) - {"value", "lat", "lon"}
_STAGING_COLUMNS = (
    "row_no",
    "vehicle_id",
    "ts_us",
    "received_us",
    "substance",
    "unit",
    "conversion",
    "sensor",
    *_FLOATS,
    "incident_id",
    "extra",
)
_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    row_no integer NOT NULL,
    vehicle_id text NOT NULL,
    ts_us bigint NOT NULL,
    received_us bigint NOT NULL,
    substance text NOT NULL,
    unit text NOT NULL,
    conversion text NOT NULL,
    sensor text,
    {", ".join(f"{c} double precision" for c in _FLOATS)},
    incident_id bigint NOT NULL,
    extra text
) ON COMMIT DELETE ROWS
"""
_INSERT = f"""
WITH inserted AS (
    INSERT INTO emergency_readings (
        vehicle_id, ts, substance, unit, conversion, sensor, {", ".join(_FLOATS)},
        incident_id, extra, received_at)
    SELECT vehicle_id, {_us("ts_us")}, substance, unit, conversion, sensor,
           {", ".join(f"NULLIF({c}, 'NaN')" if c in _NULLABLE else c for c in _FLOATS)},
           NULLIF(incident_id, -1), extra::jsonb, {_us("received_us")}
    FROM {_STAGING}
    ORDER BY vehicle_id, ts_us, substance
    ON CONFLICT (vehicle_id, ts, substance) DO NOTHING
    RETURNING vehicle_id, ts, substance
)
SELECT s.row_no
FROM inserted i
JOIN {_STAGING} s
  ON s.vehicle_id = i.vehicle_id AND {_us("s.ts_us")} = i.ts AND s.substance = i.substance
"""
_STAGED = Staging(_STAGING, _STAGING_COLUMNS, _CREATE_STAGING, _INSERT)


async def insert_emergency(conn: asyncpg.Connection, rows: ReadingRows) -> npt.NDArray[np.intp]:
    """Insert readings; return the positions (into ``rows``) of those that were new.

    Must run inside the caller's transaction. A reading whose (vehicle_id, ts, substance) is
    already stored is skipped, so a redelivered message changes nothing.
    """
    if len(rows) == 0:
        return np.empty(0, dtype=np.intp)
    keep = first_of_each_key(rows.vehicle_id, rows.ts_us, rows.substance)
    columns = [
        keep.tolist(),
        rows.vehicle_id[keep].tolist(),
        rows.ts_us[keep].tolist(),
        rows.received_us[keep].tolist(),
        rows.substance[keep].tolist(),
        rows.unit[keep].tolist(),
        rows.conversion[keep].tolist(),
        rows.sensor[keep].tolist(),
        *(getattr(rows, c)[keep].tolist() for c in _FLOATS),
        rows.incident_id[keep].tolist(),
        [json_text(e) for e in rows.extra[keep].tolist()],
    ]
    return await _STAGED.insert_new(conn, columns)


# --- incidents as ingest sees them ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentSet:
    """Incidents as columns; ``end_us`` is the close time, or the int64 maximum while open."""

    id: IntArray
    lat: FloatArray
    lon: FloatArray
    radius_m: FloatArray
    start_us: IntArray
    end_us: IntArray

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @property
    def open(self) -> npt.NDArray[np.bool_]:
        return self.end_us == _OPEN_END_US


async def incidents_during(conn: asyncpg.Connection, since_us: int, until_us: int) -> IncidentSet:
    """The incidents whose window overlaps [since_us, until_us] (measurement times).

    Run inside the ingest batch's transaction: it takes the shared side of the incidents lock,
    so an incident being opened or closed is either fully seen or not at all.
    """
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _LOCK_KEY)
    row = await conn.fetchrow(
        f"""
        SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS id,
               coalesce(array_agg(lat ORDER BY id), '{{}}') AS lat,
               coalesce(array_agg(lon ORDER BY id), '{{}}') AS lon,
               coalesce(array_agg(radius_m ORDER BY id), '{{}}') AS radius_m,
               coalesce(array_agg({_epoch_us("started_at")} ORDER BY id), '{{}}') AS start_us,
               coalesce(array_agg(coalesce({_epoch_us("closed_at")}, $3) ORDER BY id), '{{}}')
                   AS end_us
        FROM incidents
        WHERE started_at <= {_us("$2::bigint")}
          AND (closed_at IS NULL OR closed_at > {_us("$1::bigint")})
        """,
        since_us,
        until_us,
        int(_OPEN_END_US),
    )
    assert row is not None
    return IncidentSet(
        id=np.array(row["id"], dtype=np.int64),
        lat=np.array(row["lat"], dtype=np.float64),
        lon=np.array(row["lon"], dtype=np.float64),
        radius_m=np.array(row["radius_m"], dtype=np.float64),
        start_us=np.array(row["start_us"], dtype=np.int64),
        end_us=np.array(row["end_us"], dtype=np.int64),
    )


# --- incidents as officers see them --------------------------------------------------------

_INCIDENT = """
    i.id, i.name, i.lat, i.lon, i.started_at, i.closed_at, i.radius_m, i.suspected_substances,
    i.opened_by, i.closed_by, i.note, i.created_at,
    (SELECT count(*) FROM emergency_readings r WHERE r.incident_id = i.id) AS readings
"""


async def get_incident(conn: asyncpg.Pool | asyncpg.Connection, incident_id: int) -> dict[str, Any]:
    """One incident, with the number of readings that belong to it; NotFoundError if none."""
    row = await conn.fetchrow(f"SELECT {_INCIDENT} FROM incidents i WHERE i.id = $1", incident_id)
    if row is None:
        raise NotFoundError(f"incident {incident_id} does not exist")
    return dict(row)


async def list_incidents(
    pool: asyncpg.Pool, *, status: str | None = None, before_id: int | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Incidents newest first; ``status`` 'open' or 'closed' filters, ``before_id`` pages."""
    if status not in (None, "open", "closed"):
        raise ValueError(f"status must be 'open' or 'closed', not {status!r}")
    rows = await pool.fetch(
        f"""
        SELECT {_INCIDENT} FROM incidents i
        WHERE ($1::text IS NULL OR (i.closed_at IS NULL) = ($1 = 'open'))
          AND ($2::bigint IS NULL OR i.id < $2)
        ORDER BY i.id DESC
        LIMIT $3
        """,
        status,
        before_id,
        limit,
    )
    return [dict(r) for r in rows]


def _bounding_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    dlat = math.degrees(radius_m / EARTH_RADIUS_M) * 1.01
    coslat = max(math.cos(math.radians(lat)), 1e-6)
    dlon = min(180.0, dlat / coslat)
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


async def lock_incidents(conn: asyncpg.Connection) -> None:
    """Serialize opening and closing incidents with the ingest batches that read them (held to
    the end of the caller's transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)


async def insert_incident(
    conn: asyncpg.Connection,
    *,
    name: str,
    lat: float,
    lon: float,
    started_at: dt.datetime | None,
    radius_m: float,
    suspected_substances: Sequence[str],
    by: str,
    note: str | None,
) -> dict[str, Any]:
    """Insert an incident (``started_at`` None: now) opened by the account named ``by``; its
    id, place, radius and window."""
    created = await conn.fetchrow(
        "INSERT INTO incidents (name, lat, lon, started_at, radius_m, suspected_substances, "
        "opened_by, note) VALUES ($1, $2, $3, coalesce($4, now()), $5, $6, $7, $8) "
        "RETURNING id, lat, lon, radius_m, started_at, closed_at",
        name,
        lat,
        lon,
        started_at,
        radius_m,
        [s.strip().lower() for s in suspected_substances],
        by,
        note,
    )
    assert created is not None
    return dict(created)


async def unassigned_readings_near(
    conn: asyncpg.Connection, incident: dict[str, Any]
) -> dict[str, npt.NDArray[Any]]:
    """Stored readings of no incident inside the incident's window and the bounding box of its
    radius, as columns: vehicle_id, ts_us, substance, lat, lon."""
    south, north, west, east = _bounding_box(incident["lat"], incident["lon"], incident["radius_m"])
    row = await conn.fetchrow(
        f"""
        SELECT coalesce(array_agg(vehicle_id), '{{}}') AS vehicle_id,
               coalesce(array_agg({_epoch_us("ts")}), '{{}}') AS ts_us,
               coalesce(array_agg(substance), '{{}}') AS substance,
               coalesce(array_agg(lat), '{{}}') AS lat,
               coalesce(array_agg(lon), '{{}}') AS lon
        FROM emergency_readings
        WHERE incident_id IS NULL AND ts >= $1 AND ($2::timestamptz IS NULL OR ts < $2)
          AND lat BETWEEN $3 AND $4 AND lon BETWEEN $5 AND $6
        """,
        incident["started_at"],
        incident["closed_at"],
        south,
        north,
        west,
        east,
    )
    assert row is not None
    return {
        "vehicle_id": np.array(row["vehicle_id"], dtype=object),
        "ts_us": np.array(row["ts_us"], dtype=np.int64),
        "substance": np.array(row["substance"], dtype=object),
        "lat": np.array(row["lat"], dtype=np.float64),
        "lon": np.array(row["lon"], dtype=np.float64),
    }


async def assign_readings(
    conn: asyncpg.Connection,
    incident_id: int,
    *,
    vehicle_id: npt.NDArray[np.object_],
    ts_us: IntArray,
    substance: npt.NDArray[np.object_],
    distance_m: FloatArray,
    bearing_deg: FloatArray,
) -> int:
    """Give readings of no incident to ``incident_id``, with their distance and bearing from
    its source; returns how many rows it took."""
    status = await conn.execute(
        f"""
        UPDATE emergency_readings r
        SET incident_id = $1, distance_m = u.distance_m, bearing_deg = u.bearing_deg
        FROM unnest($2::text[], $3::bigint[], $4::text[], $5::float8[], $6::float8[])
             AS u(vehicle_id, ts_us, substance, distance_m, bearing_deg)
        WHERE r.vehicle_id = u.vehicle_id AND r.ts = {_us("u.ts_us")}
          AND r.substance = u.substance AND r.incident_id IS NULL
        """,
        incident_id,
        vehicle_id.tolist(),
        ts_us.tolist(),
        substance.tolist(),
        distance_m.tolist(),
        bearing_deg.tolist(),
    )
    return int(status.split()[-1])


async def close_incident(
    pool: asyncpg.Pool, incident_id: int, *, by: Actor, note: str | None = None
) -> dict[str, Any]:
    """Close an open incident now and resolve its unresolved alerts, as ``by`` (its name is
    stored; audited); return it.

    Raises :class:`NotFoundError` for an unknown incident and :class:`ConflictError` for one
    that is already closed. Readings measured before the close that arrive later still belong
    to the incident, but raise no alerts.
    """
    async with pool.acquire() as conn, conn.transaction():
        await lock_incidents(conn)
        before = await get_incident(conn, incident_id)  # NotFoundError if unknown
        closed = await conn.fetchval(
            "UPDATE incidents SET closed_at = greatest(now(), started_at), closed_by = $2, "
            "note = coalesce($3, note) WHERE id = $1 AND closed_at IS NULL RETURNING id",
            incident_id,
            by.name,
            note,
        )
        if closed is None:
            when = before["closed_at"].isoformat(timespec="seconds")
            raise ConflictError(
                f"incident {incident_id} was already closed at {when} by {before['closed_by']}"
            )
        resolve_note = f"incident {incident_id} closed" + (f": {note}" if note else "")
        resolved = await conn.fetch(
            "UPDATE alerts SET status = 'resolved', resolved_by = $2, resolved_at = now(), "
            "resolve_note = $3, updated_at = now() "
            "WHERE kind = $4 AND subject = $1 AND status <> 'resolved' RETURNING id",
            f"incident:{incident_id}",
            by.name,
            resolve_note,
            Kind.EMERGENCY.value,
        )
        after = await get_incident(conn, incident_id)
        await audit.record(
            conn,
            by,
            action="incident.close",
            entity="incident",
            entity_id=incident_id,
            before=before,
            after={**after, "resolved_alerts": sorted(r["id"] for r in resolved)},
        )
        return after


async def incident_readings(
    conn: asyncpg.Pool | asyncpg.Connection, incident_id: int
) -> dict[str, npt.NDArray[Any]]:
    """The readings of one incident as columns: substance, value_ppm, value_mgm3 (NaN where
    not convertible), ts_us, distance_m, bearing_deg."""
    row = await conn.fetchrow(
        f"""
        SELECT coalesce(array_agg(substance), '{{}}') AS substance,
               coalesce(array_agg(coalesce(value_ppm, 'NaN')), '{{}}') AS value_ppm,
               coalesce(array_agg(coalesce(value_mgm3, 'NaN')), '{{}}') AS value_mgm3,
               coalesce(array_agg({_epoch_us("ts")}), '{{}}') AS ts_us,
               coalesce(array_agg(distance_m), '{{}}') AS distance_m,
               coalesce(array_agg(bearing_deg), '{{}}') AS bearing_deg
        FROM emergency_readings WHERE incident_id = $1
        """,
        incident_id,
    )
    assert row is not None
    return {
        "substance": np.array(row["substance"], dtype=object),
        "value_ppm": np.array(row["value_ppm"], dtype=np.float64),
        "value_mgm3": np.array(row["value_mgm3"], dtype=np.float64),
        "ts_us": np.array(row["ts_us"], dtype=np.int64),
        "distance_m": np.array(row["distance_m"], dtype=np.float64),
        "bearing_deg": np.array(row["bearing_deg"], dtype=np.float64),
    }


async def incident_wind(
    conn: asyncpg.Pool | asyncpg.Connection, incident_id: int
) -> dict[str, npt.NDArray[Any]]:
    """The wind the vehicles measured at an incident's readings, once per vehicle and time
    (the long form repeats it per substance): ts_us, wind_speed_ms, wind_dir_deg (the
    direction it blows from), with both measured."""
    row = await conn.fetchrow(
        f"""
        SELECT coalesce(array_agg(ts_us), '{{}}') AS ts_us,
               coalesce(array_agg(speed), '{{}}') AS speed,
               coalesce(array_agg(direction), '{{}}') AS direction
        FROM (
            SELECT DISTINCT ON (vehicle_id, ts) {_epoch_us("ts")} AS ts_us,
                   wind_speed_ms::float8 AS speed, wind_dir_deg::float8 AS direction
            FROM emergency_readings
            WHERE incident_id = $1 AND wind_speed_ms IS NOT NULL AND wind_dir_deg IS NOT NULL
            ORDER BY vehicle_id, ts
        ) AS w
        """,
        incident_id,
    )
    assert row is not None
    return {
        "ts_us": np.array(row["ts_us"], dtype=np.int64),
        "speed_ms": np.array(row["speed"], dtype=np.float64),
        "from_deg": np.array(row["direction"], dtype=np.float64),
    }
