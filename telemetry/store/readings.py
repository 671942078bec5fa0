"""Walk-through readings and the per-vehicle last state: bulk, idempotent writes."""

from __future__ import annotations

import asyncpg
import numpy as np
import numpy.typing as npt

from telemetry.readings import FloatArray, IntArray, WalkthroughBatch
from telemetry.store.staging import Staging, first_of_each_key, json_text

__all__ = ["insert_walkthrough", "upsert_vehicles"]

_STAGING = "walkthrough_staging"


_FLOAT_COLUMNS = (
    "lat",
    "lon",
    "speed_kmh",
    "heading_deg",
    "pm25",
    "pm10",
    "no2",
    "o3",
    "so2",
    "co",
    "tvoc",
    "temp_c",
    "rh_pct",
    "wind_speed_ms",
    "wind_dir_deg",
)
_STAGING_COLUMNS = (
    "row_no",
    "vehicle_id",
    "ts_us",
    "received_us",
    *_FLOAT_COLUMNS,
    "flag",
    "segment_id",
    "snap_distance_m",
    "extra",
)
_NULLABLE = frozenset(_FLOAT_COLUMNS) - {"lat", "lon"} | {"snap_distance_m"}


def _us(column: str) -> str:
    return f"TIMESTAMPTZ 'epoch' + {column} * INTERVAL '1 microsecond'"


# Staging rows carry times as integer microseconds (exact, and cheap to encode); NaN marks an
# absent value on the wire and becomes NULL here.
_INSERT = f"""
WITH inserted AS (
    INSERT INTO walkthrough_readings (
        vehicle_id, ts, received_at, {", ".join(_FLOAT_COLUMNS)},
        flag, segment_id, snap_distance_m, extra)
    SELECT vehicle_id, {_us("ts_us")}, {_us("received_us")},
           {", ".join(f"NULLIF({c}, 'NaN')" if c in _NULLABLE else c for c in _FLOAT_COLUMNS)},
           flag, NULLIF(segment_id, -1), NULLIF(snap_distance_m, 'NaN'), extra::jsonb
    FROM {_STAGING}
    ORDER BY vehicle_id, ts_us
    ON CONFLICT (vehicle_id, ts) DO NOTHING
    RETURNING vehicle_id, ts
)
SELECT s.row_no
FROM inserted i
JOIN {_STAGING} s ON s.vehicle_id = i.vehicle_id AND {_us("s.ts_us")} = i.ts
"""

_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    row_no integer NOT NULL,
    vehicle_id text NOT NULL,
    ts_us bigint NOT NULL,
    received_us bigint NOT NULL,
    {", ".join(f"{c} double precision" for c in _FLOAT_COLUMNS)},
    flag char(1) NOT NULL,
    segment_id bigint NOT NULL,
    snap_distance_m double precision,
    extra text
) ON COMMIT DELETE ROWS
"""
_STAGED = Staging(_STAGING, _STAGING_COLUMNS, _CREATE_STAGING, _INSERT)


async def insert_walkthrough(
    conn: asyncpg.Connection,
    batch: WalkthroughBatch,
    segment_id: IntArray,
    snap_distance_m: FloatArray,
) -> npt.NDArray[np.intp]:
    """Insert the batch; return the positions (into ``batch``) of rows that were new.

    Must run inside the caller's transaction. A reading whose (vehicle_id, ts) is already
    stored is skipped, so a redelivered message changes nothing.
    """
    if len(batch) == 0:
        return np.empty(0, dtype=np.intp)
    keep = first_of_each_key(batch.vehicle_id, batch.ts_us)
    values = [
        keep.tolist(),
        batch.vehicle_id[keep].tolist(),
        batch.ts_us[keep].tolist(),
        batch.received_us[keep].tolist(),
        *(getattr(batch, c)[keep].tolist() for c in _FLOAT_COLUMNS),
        batch.flag[keep].tolist(),
        segment_id[keep].tolist(),
        snap_distance_m[keep].tolist(),
        [json_text(e) for e in batch.extra[keep].tolist()],
    ]
    return await _STAGED.insert_new(conn, values)


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
