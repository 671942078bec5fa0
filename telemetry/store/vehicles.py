"""Table ``vehicles``: every vehicle's last known state, kept by the ingest batch of any kind."""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from telemetry.columns import FloatArray, IntArray
from telemetry.errors import NotFoundError

__all__ = ["list_vehicles", "require_vehicle", "upsert_vehicles"]

_LIST = """
    SELECT vehicle_id, kind, last_ts, last_lat, last_lon, last_received_at, readings,
           last_received_at >= now() - make_interval(secs => $1) AS online
    FROM vehicles
    WHERE ($2::text IS NULL OR kind = $2)
      AND ($3::boolean IS NULL OR (last_received_at >= now() - make_interval(secs => $1)) = $3)
      AND ($4::text IS NULL OR vehicle_id > $4)
    ORDER BY vehicle_id
    LIMIT $5
"""


async def list_vehicles(
    pool: asyncpg.Pool,
    *,
    online_s: float,
    kind: str | None = None,
    online: bool | None = None,
    after: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Vehicles ordered by id, each with ``online``: heard from within ``online_s`` seconds.

    ``after`` continues a listing after the last vehicle id of the previous page.
    """
    rows = await pool.fetch(_LIST, float(online_s), kind, online, after, limit)
    return [dict(r) for r in rows]


async def require_vehicle(conn: asyncpg.Pool | asyncpg.Connection, vehicle_id: str) -> None:
    """Raise :class:`NotFoundError` unless the vehicle has sent data or is registered with the
    broker (``telemetry vehicles register``): settings for a mistyped id are refused rather
    than kept for a vehicle that never comes."""
    known = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM vehicles WHERE vehicle_id = $1)"
        " OR EXISTS (SELECT 1 FROM vehicle_accounts WHERE vehicle_id = $1)",
        vehicle_id,
    )
    if not known:
        raise NotFoundError(f"no vehicle {vehicle_id!r}: it has sent nothing and is not registered")


async def upsert_vehicles(
    conn: asyncpg.Connection,
    kind: str,
    vehicle_id: npt.NDArray[np.object_],
    ts_us: IntArray,
    lat: FloatArray,
    lon: FloatArray,
    received_us: IntArray,
) -> None:
    """Move each vehicle's last known state forward (never backward, for late data)."""
    if len(vehicle_id) == 0:
        return
    vehicles = vehicle_id.astype(str)
    order = np.lexsort((ts_us, vehicles))
    v = vehicles[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = v[1:] != v[:-1]
    pick = order[last]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    counts = np.diff(np.r_[starts, len(v)])
    received = np.maximum.reduceat(received_us[order], starts)
    await conn.execute(
        """
        INSERT INTO vehicles AS v (vehicle_id, kind, last_ts, last_lat, last_lon,
                                   last_received_at, readings)
        SELECT u.vehicle_id, $1, TIMESTAMPTZ 'epoch' + u.ts_us * INTERVAL '1 microsecond',
               u.lat, u.lon, TIMESTAMPTZ 'epoch' + u.rx_us * INTERVAL '1 microsecond', u.n
        FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::float8[], $6::bigint[],
                    $7::bigint[]) AS u(vehicle_id, ts_us, lat, lon, rx_us, n)
        ON CONFLICT (vehicle_id) DO UPDATE SET
            last_ts = GREATEST(v.last_ts, EXCLUDED.last_ts),
            last_lat = CASE WHEN EXCLUDED.last_ts > v.last_ts
                            THEN EXCLUDED.last_lat ELSE v.last_lat END,
            last_lon = CASE WHEN EXCLUDED.last_ts > v.last_ts
                            THEN EXCLUDED.last_lon ELSE v.last_lon END,
            last_received_at = GREATEST(v.last_received_at, EXCLUDED.last_received_at),
            readings = v.readings + EXCLUDED.readings
        """,
        kind,
        vehicles[pick].tolist(),
        ts_us[pick].tolist(),
        lat[pick].tolist(),
        lon[pick].tolist(),
        received.tolist(),
        counts.tolist(),
    )
