"""Every SQL statement on table ``vehicle_accounts`` (migration 0008)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telemetry.broker.passwords import PasswordHash
from telemetry.hj212.station import Station

__all__ = [
    "CHANNEL",
    "Credential",
    "VehicleAccount",
    "delete_simulated",
    "disable",
    "enabled_credentials",
    "hj212_stations",
    "list_accounts",
    "set_declared_units",
    "set_hj212",
    "upsert",
]

# The NOTIFY channel the table's trigger signals on every change.
CHANNEL = "vehicle_accounts"

_UPSERT = """
INSERT INTO vehicle_accounts (vehicle_id, kind, salt, password_hash, iterations, simulated)
VALUES ($1, $2, $3, $4, $5, $7)
ON CONFLICT (vehicle_id) DO UPDATE
    SET kind = EXCLUDED.kind, salt = EXCLUDED.salt, password_hash = EXCLUDED.password_hash,
        iterations = EXCLUDED.iterations, enabled = true, password_set_at = now()
    WHERE $6 AND (NOT $7 OR vehicle_accounts.simulated)
RETURNING vehicle_id
"""
_DISABLE = """
UPDATE vehicle_accounts
SET enabled = false, revoked_at = CASE WHEN enabled THEN now() ELSE revoked_at END
WHERE vehicle_id = $1
RETURNING vehicle_id
"""
_DELETE_SIMULATED = """
DELETE FROM vehicle_accounts WHERE vehicle_id = ANY($1::text[]) AND simulated
"""
_LIST = """
SELECT vehicle_id, kind, enabled, simulated, registered_at, password_set_at, revoked_at
FROM vehicle_accounts ORDER BY vehicle_id
"""
_ENABLED = """
SELECT vehicle_id, kind, salt, password_hash, iterations
FROM vehicle_accounts WHERE enabled ORDER BY vehicle_id
"""


_SET_HJ212 = """
UPDATE vehicle_accounts
SET hj212_mn = $2, hj212_pw = $3, hj212_options = $4::text::jsonb, site_lat = $5, site_lon = $6
WHERE vehicle_id = $1
RETURNING vehicle_id
"""
_HJ212_STATIONS = """
SELECT vehicle_id, kind, hj212_mn, hj212_pw, site_lat, site_lon, hj212_options::text
FROM vehicle_accounts WHERE enabled AND hj212_mn = ANY($1::text[])
"""


@dataclass(frozen=True, slots=True)
class VehicleAccount:
    """A registered vehicle, without its password hash."""

    vehicle_id: str
    kind: str
    enabled: bool
    simulated: bool
    registered_at: datetime
    password_set_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Credential:
    """What the broker needs of an enabled vehicle: who, where it may publish, its hash."""

    vehicle_id: str
    kind: str
    password: PasswordHash


async def upsert(
    conn: asyncpg.Connection,
    rows: list[tuple[str, str, PasswordHash]],
    *,
    replace: bool,
    simulated: bool = False,
) -> set[str]:
    """Register (vehicle id, kind, hash) rows; with ``replace`` an existing vehicle gets the
    new password and kind and is enabled again (but a simulated registration never replaces
    a vehicle registered by a person). Returns the ids written: the others exist already."""
    written: set[str] = set()
    async with conn.transaction():
        for vehicle_id, kind, h in rows:
            row = await conn.fetchrow(
                _UPSERT, vehicle_id, kind, h.salt, h.key_hex, h.iterations, replace, simulated
            )
            if row is not None:
                written.add(vehicle_id)
    return written


async def disable(conn: asyncpg.Connection, vehicle_id: str) -> bool:
    """Disable a vehicle's account; False if no such vehicle is registered."""
    return await conn.fetchval(_DISABLE, vehicle_id) is not None


async def delete_simulated(conn: asyncpg.Connection, vehicle_ids: list[str]) -> None:
    """Delete these vehicles' accounts where a simulator registered them."""
    await conn.execute(_DELETE_SIMULATED, vehicle_ids)


async def list_accounts(conn: asyncpg.Connection) -> list[VehicleAccount]:
    """Every registered vehicle, ordered by id."""
    return [VehicleAccount(**dict(r)) for r in await conn.fetch(_LIST)]


async def enabled_credentials(conn: asyncpg.Connection) -> list[Credential]:
    """The enabled vehicles with their password hashes, ordered by id."""
    return [
        Credential(
            r["vehicle_id"],
            r["kind"],
            PasswordHash(r["salt"], r["password_hash"], r["iterations"]),
        )
        for r in await conn.fetch(_ENABLED)
    ]


async def set_hj212(conn: asyncpg.Connection, station: Station) -> bool:
    """Give a registered vehicle its HJ 212 analyser (MN, PW, options, fixed position);
    False if no such vehicle is registered. An MN another vehicle has raises
    ``asyncpg.UniqueViolationError``."""
    row = await conn.fetchval(
        _SET_HJ212,
        station.vehicle_id,
        station.mn,
        station.pw,
        json.dumps(station.options()),
        station.lat,
        station.lon,
    )
    return row is not None


_SET_UNIT = """
INSERT INTO vehicle_declared_units (vehicle_id, channel, unit) VALUES ($1, $2, $3)
ON CONFLICT (vehicle_id, channel) DO UPDATE SET unit = EXCLUDED.unit, set_at = now()
"""
_DELETE_UNIT = "DELETE FROM vehicle_declared_units WHERE vehicle_id = $1 AND channel = $2"
_DECLARED_UNITS = """
SELECT channel, unit FROM vehicle_declared_units WHERE vehicle_id = $1 ORDER BY channel
"""


async def set_declared_units(
    conn: asyncpg.Connection, vehicle_id: str, units: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Set a registered vehicle's declared units (table ``vehicle_declared_units``,
    migration 0017), {channel: unit}; an empty unit removes the channel's declaration, and
    channels not named keep theirs. Returns its declarations before and after."""
    async with conn.transaction():
        before = {r["channel"]: r["unit"] for r in await conn.fetch(_DECLARED_UNITS, vehicle_id)}
        for channel, unit in units.items():
            if unit:
                await conn.execute(_SET_UNIT, vehicle_id, channel, unit)
            else:
                await conn.execute(_DELETE_UNIT, vehicle_id, channel)
        after = {r["channel"]: r["unit"] for r in await conn.fetch(_DECLARED_UNITS, vehicle_id)}
    return before, after


async def hj212_stations(conn: asyncpg.Connection, mns: list[str]) -> dict[str, Station]:
    """The enabled vehicles' analysers among ``mns``, by MN."""
    out = {}
    for r in await conn.fetch(_HJ212_STATIONS, mns):
        options = json.loads(r["hj212_options"])
        out[r["hj212_mn"]] = Station.from_options(
            r["vehicle_id"], r["kind"], r["hj212_mn"], r["hj212_pw"], r["site_lat"],
            r["site_lon"], options,
        )  # fmt: skip
    return out
