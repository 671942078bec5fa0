"""Reading vehicles: their last known state and the track they drove.

The ``vehicles`` table is maintained by the ingest batch; this module only reads it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from telemetry.errors import NotFoundError
from telemetry.readings import POLLUTANTS

__all__ = ["list_vehicles", "track_geojson"]

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


_UTC_ISO = """to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_POINT_PROPERTIES = ", ".join(f"'{p}', NULLIF({p}, 'NaN')" for p in POLLUTANTS)

# The whole FeatureCollection is built by the server as one JSON text: a day of 1 Hz points is
# 86,400 features, which would otherwise cost a Python object and a validation per point.
_TRACK = f"""
    WITH points AS (
        SELECT ts, lon, lat, segment_id, flag, {", ".join(POLLUTANTS)}
        FROM walkthrough_readings
        WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3
        ORDER BY ts
        LIMIT $4
    ),
    features AS (
        SELECT 0 AS part, NULL::timestamptz AS ts,
               json_build_object(
                   'type', 'Feature',
                   'geometry', json_build_object(
                       'type', 'LineString',
                       'coordinates', json_agg(json_build_array(lon, lat) ORDER BY ts)),
                   'properties', json_build_object(
                       'vehicle_id', $1::text, 'points', count(*),
                       'first_ts', min({_UTC_ISO}), 'last_ts', max({_UTC_ISO}))
               ) AS feature
        FROM points
        HAVING count(*) >= 2
        UNION ALL
        SELECT 1, ts,
               json_build_object(
                   'type', 'Feature',
                   'geometry', json_build_object(
                       'type', 'Point', 'coordinates', json_build_array(lon, lat)),
                   'properties', json_build_object(
                       'ts', {_UTC_ISO}, 'segment_id', segment_id, 'flag', flag,
                       {_POINT_PROPERTIES}))
        FROM points
    )
    SELECT (EXISTS (SELECT 1 FROM vehicles WHERE vehicle_id = $1)
            OR EXISTS (SELECT 1 FROM walkthrough_readings WHERE vehicle_id = $1)) AS known,
           json_build_object(
               'type', 'FeatureCollection',
               'features', COALESCE(
                   (SELECT json_agg(feature ORDER BY part, ts) FROM features), '[]'::json)
           )::text AS body
"""


async def track_geojson(
    pool: asyncpg.Pool,
    vehicle_id: str,
    *,
    since: datetime,
    until: datetime,
    max_points: int = 86_400,
) -> str:
    """The vehicle's track in ``[since, until)`` as GeoJSON FeatureCollection text.

    The first feature is the path as a LineString (present when there are two points or
    more); then one Point feature per reading in time order, with its ``ts`` (UTC),
    ``segment_id``, ``flag`` and pollutant values, at most ``max_points`` of them.
    :class:`NotFoundError` if the vehicle has never been seen.
    """
    row = await pool.fetchrow(_TRACK, vehicle_id, since, until, max_points)
    assert row is not None
    if not row["known"]:
        raise NotFoundError(f"vehicle {vehicle_id!r} does not exist")
    body: str = row["body"]
    return body
