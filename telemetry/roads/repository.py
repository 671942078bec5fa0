"""Road segments in PostgreSQL: import, geometry for the snapping index, per-segment detail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from telemetry.errors import RoadNetworkError
from telemetry.roads.model import Segment

__all__ = [
    "HOT_POLLUTANTS",
    "count_segments",
    "fetch_segment",
    "list_active_segments",
    "list_hot_segments",
    "load_segment_geometries",
    "load_segment_network",
    "recent_segment_stats",
    "segment_network_version",
    "upsert_segments",
]

_UPSERT = """
INSERT INTO road_segments
    (source, road_ref, seq, name, highway, length_m, coords, min_lon, min_lat, max_lon, max_lat)
SELECT $1, s.road_ref, s.seq, s.name, s.highway, s.length_m, s.coords::jsonb,
       s.min_lon, s.min_lat, s.max_lon, s.max_lat
FROM unnest($2::text[], $3::integer[], $4::text[], $5::text[], $6::float8[], $7::text[],
            $8::float8[], $9::float8[], $10::float8[], $11::float8[])
     AS s(road_ref, seq, name, highway, length_m, coords, min_lon, min_lat, max_lon, max_lat)
ON CONFLICT (source, road_ref, seq) DO UPDATE SET
    name = EXCLUDED.name,
    highway = EXCLUDED.highway,
    length_m = EXCLUDED.length_m,
    coords = EXCLUDED.coords,
    min_lon = EXCLUDED.min_lon,
    min_lat = EXCLUDED.min_lat,
    max_lon = EXCLUDED.max_lon,
    max_lat = EXCLUDED.max_lat,
    imported_at = now()
"""

_DELETE_MISSING = """
DELETE FROM road_segments AS r
WHERE r.source = $1
  AND NOT EXISTS (
      SELECT 1 FROM unnest($2::text[], $3::integer[]) AS k(road_ref, seq)
      WHERE k.road_ref = r.road_ref AND k.seq = r.seq)
"""


async def upsert_segments(
    conn: asyncpg.Connection, source: str, segments: Sequence[Segment]
) -> int:
    """Make ``source``'s stored segments exactly ``segments``; returns how many were written.

    Segments are keyed by ``(source, road_ref, seq)``: one that is already stored keeps its id
    and gets the new attributes, a new one is inserted, and the source's segments that are not
    in ``segments`` are deleted. Runs in the caller's transaction; wrap it in one so that a
    failure leaves the previous import in place.
    """
    keys = {(s.road_ref, s.seq) for s in segments}
    if len(keys) != len(segments):
        raise RoadNetworkError(f"source {source!r}: the same (road_ref, seq) appears twice")
    road_refs = [s.road_ref for s in segments]
    seqs = [s.seq for s in segments]
    lons = [[lon for lon, _ in s.coords] for s in segments]
    lats = [[lat for _, lat in s.coords] for s in segments]
    status = await conn.execute(
        _UPSERT,
        source,
        road_refs,
        seqs,
        [s.name for s in segments],
        [s.highway for s in segments],
        [s.length_m for s in segments],
        [json.dumps([list(point) for point in s.coords]) for s in segments],
        [min(x) for x in lons],
        [min(y) for y in lats],
        [max(x) for x in lons],
        [max(y) for y in lats],
    )
    await conn.execute(_DELETE_MISSING, source, road_refs, seqs)
    return int(status.rsplit(" ", 1)[-1])


async def load_segment_geometries(
    pool: asyncpg.Pool,
) -> list[tuple[int, list[tuple[float, float]]]]:
    """Every segment's id and (lon, lat) positions, ordered by id: the snapping index's input."""
    rows = await pool.fetch("SELECT id, coords FROM road_segments ORDER BY id")
    return [(row["id"], [(lon, lat) for lon, lat in _coords(row["coords"])]) for row in rows]


async def fetch_segment(
    pool: asyncpg.Pool, segment_id: int, *, since: datetime
) -> dict[str, Any] | None:
    """One segment with its GeoJSON geometry and its hourly statistics from ``since`` on.

    ``hourly`` holds rows of ``walkthrough_segment_hourly`` with ``bucket >= since``, newest
    first. None when there is no such segment.
    """
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id, source, road_ref, seq, name, highway, length_m, coords"
            " FROM road_segments WHERE id = $1",
            segment_id,
        )
        if row is None:
            return None
        hourly = await conn.fetch(
            "SELECT * FROM walkthrough_segment_hourly"
            " WHERE segment_id = $1 AND bucket >= $2 ORDER BY bucket DESC",
            segment_id,
            since,
        )
    segment = _with_geometry(row)
    segment["hourly"] = [dict(r) for r in hourly]
    return segment


def _with_geometry(row: asyncpg.Record) -> dict[str, Any]:
    """The row as a dict, its ``coords`` as a GeoJSON LineString ``geometry``."""
    segment = dict(row)
    segment["geometry"] = {"type": "LineString", "coordinates": _coords(segment.pop("coords"))}
    return segment


def _coords(value: Any) -> list[list[float]]:
    # jsonb arrives decoded from pools made by telemetry.db.create_pool, as text from others.
    return json.loads(value) if isinstance(value, str) else value


async def count_segments(pool: asyncpg.Pool) -> int:
    """How many road segments are stored."""
    count = await pool.fetchval("SELECT count(*) FROM road_segments")
    return int(count)


#: The walk-through reading columns :func:`list_hot_segments` can rank segments by.
HOT_POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "no2", "o3", "so2", "co", "tvoc")

_HOT = """
SELECT s.id, s.name, s.road_ref, s.highway, s.length_m, s.coords,
       coalesce(st.readings, 0) AS readings, st.mean, st.max
FROM road_segments AS s
LEFT JOIN LATERAL (
    SELECT count(*) AS readings, avg(r.{col}) AS mean, max(r.{col}) AS max
    FROM walkthrough_readings AS r
    WHERE r.segment_id = s.id AND r.ts >= $5 AND r.flag = 'N' AND r.{col} IS NOT NULL
) AS st ON true
WHERE ($1::float8 IS NULL
       OR (s.max_lon >= $1 AND s.min_lon <= $3 AND s.max_lat >= $2 AND s.min_lat <= $4))
  AND coalesce(st.readings, 0) >= $6
ORDER BY st.mean DESC NULLS LAST, s.id
LIMIT $7 OFFSET $8
"""


async def list_hot_segments(
    pool: asyncpg.Pool,
    *,
    pollutant: str,
    since: datetime,
    bbox: tuple[float, float, float, float] | None = None,
    min_readings: int = 0,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Segments (intersecting ``bbox`` = min lon, min lat, max lon, max lat, when given) with
    the count, mean and max of their valid (flag ``N``) walk-through readings of ``pollutant``
    measured since ``since``; highest mean first (segments without readings last), then by id.
    """
    if pollutant not in HOT_POLLUTANTS:
        raise ValueError(f"unknown pollutant {pollutant!r}")
    rows = await pool.fetch(
        _HOT.format(col=pollutant),
        *(bbox if bbox is not None else (None, None, None, None)),
        since,
        min_readings,
        limit,
        offset,
    )
    return [_with_geometry(row) for row in rows]


_NETWORK_VERSION = """
SELECT count(*) AS segments, coalesce(max(id), 0) AS last_id, max(imported_at) AS imported_at
FROM road_segments
"""


async def segment_network_version(pool: asyncpg.Pool) -> str:
    """A token that changes whenever the stored road network does: an import updates
    ``imported_at`` of every segment it keeps, inserts get new ids and deletes lower the count.
    One scan of the segments' few columns, far cheaper than reading their geometry."""
    async with pool.acquire() as conn:
        return _version(await conn.fetchrow(_NETWORK_VERSION))


async def load_segment_network(pool: asyncpg.Pool) -> tuple[str, dict[str, list[Any]]]:
    """The road network's version (as :func:`segment_network_version`) and its segments by
    columns, ordered by id: ``ids``, ``names``, ``road_refs``, ``points`` (each segment's
    number of positions) and ``lons``, ``lats`` (every position, segment after segment); both
    read from one snapshot, so the columns are exactly those of the version. The positions
    leave the database as float arrays, so nothing decodes 50,000 JSON values one by one."""
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        version = _version(await conn.fetchrow(_NETWORK_VERSION))
        segments = await conn.fetchrow(_NETWORK_SEGMENTS)
        positions = await conn.fetchrow(_NETWORK_POSITIONS)
    columns = {**dict(segments), **dict(positions)}
    return version, {key: value or [] for key, value in columns.items()}


_NETWORK_SEGMENTS = """
SELECT array_agg(id ORDER BY id) AS ids, array_agg(name ORDER BY id) AS names,
       array_agg(road_ref ORDER BY id) AS road_refs,
       array_agg(jsonb_array_length(coords) ORDER BY id) AS points
FROM road_segments
"""

_NETWORK_POSITIONS = """
SELECT array_agg((p.value ->> 0)::float8 ORDER BY s.id, p.n) AS lons,
       array_agg((p.value ->> 1)::float8 ORDER BY s.id, p.n) AS lats
FROM road_segments AS s
CROSS JOIN LATERAL jsonb_array_elements(s.coords) WITH ORDINALITY AS p(value, n)
"""


def _version(row: asyncpg.Record) -> str:
    imported_at = row["imported_at"]
    stamp = imported_at.timestamp() if imported_at is not None else 0.0
    return f"{row['segments']}-{row['last_id']}-{stamp:.6f}"


# The hot streets among the segments with readings, aggregated from the window's readings
# first: the same rows as _HOT with min_readings >= 1, without visiting every segment.
_ACTIVE = """
WITH st AS (
    SELECT r.segment_id, count(*) AS readings, avg(r.{col}) AS mean, max(r.{col}) AS max
    FROM walkthrough_readings AS r
    WHERE r.ts >= $1 AND r.flag = 'N' AND r.{col} IS NOT NULL AND r.segment_id IS NOT NULL
    GROUP BY r.segment_id
    HAVING count(*) >= $2
)
SELECT s.id, s.name, s.road_ref, s.highway, s.length_m, s.coords,
       st.readings, st.mean, st.max
FROM st JOIN road_segments AS s ON s.id = st.segment_id
ORDER BY st.mean DESC NULLS LAST, s.id
LIMIT $3 OFFSET $4
"""


async def list_active_segments(
    pool: asyncpg.Pool,
    *,
    pollutant: str,
    since: datetime,
    min_readings: int,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """:func:`list_hot_segments` without a box for ``min_readings`` >= 1: the same rows in the
    same order, but it aggregates only the readings of the window, so its cost follows the
    readings rather than the size of the road network."""
    if pollutant not in HOT_POLLUTANTS:
        raise ValueError(f"unknown pollutant {pollutant!r}")
    if min_readings < 1:
        raise ValueError("min_readings must be at least 1")
    rows = await pool.fetch(_ACTIVE.format(col=pollutant), since, min_readings, limit, offset)
    return [_with_geometry(row) for row in rows]


_RECENT = """
SELECT r.segment_id AS id, count(*) AS readings, avg(r.{col}) AS mean, max(r.{col}) AS max
FROM walkthrough_readings AS r
JOIN road_segments AS s ON s.id = r.segment_id
WHERE r.ts >= $1 AND r.flag = 'N' AND r.{col} IS NOT NULL
GROUP BY r.segment_id
HAVING count(*) >= $2
ORDER BY r.segment_id
"""


async def recent_segment_stats(
    pool: asyncpg.Pool, *, pollutant: str, since: datetime, min_readings: int = 1
) -> list[asyncpg.Record]:
    """The count, mean and max of the valid (flag ``N``) walk-through readings of ``pollutant``
    since ``since`` per segment with at least ``min_readings`` (>= 1) of them, by segment id:
    the statistics of :func:`list_hot_segments` without the segments' fields."""
    if pollutant not in HOT_POLLUTANTS:
        raise ValueError(f"unknown pollutant {pollutant!r}")
    if min_readings < 1:
        raise ValueError("min_readings must be at least 1")
    return await pool.fetch(_RECENT.format(col=pollutant), since, min_readings)
