"""The road network for a map, in two parts that change at different rates.

``GET /api/v1/segments/geometry``: every segment's lines, which change only when roads are
imported; encoded (and gzipped) once per version of the network and kept in the process, with
an ETag so that a browser that holds them gets a 304. ``GET /api/v1/segments/recent``: the
recent statistics of just the segments that have readings, which change every second; by
columns, without geometry. Registered before :mod:`api.routers.segments`, whose
``/segments/{segment_id}`` would otherwise take these paths.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import numpy as np
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api.routers.hot_segments import HotPollutant
from telemetry.roads.repository import (
    load_segment_network,
    recent_segment_stats,
    segment_network_version,
)
from telemetry.web import PoolDep, QueryModel

__all__ = ["RecentSegmentStats", "RecentStatsQuery", "SegmentNetwork", "router"]

router = APIRouter(prefix="/segments", tags=["segments"])

#: Decimal places kept of each coordinate: 1e-6 degrees is about 0.1 m.
COORDINATE_DIGITS = 6
#: How long a browser may reuse the network without asking (an import shows after at most this).
MAX_AGE_S = 60
#: Bump when the body's shape changes, so that no browser keeps an old one.
FORMAT = 1


class SegmentNetwork(BaseModel):
    """Every road segment, by columns, ordered by id: item ``i`` of ``ids``, ``names``,
    ``road_refs`` and ``points`` is one segment; its line is the next ``points[i]`` positions
    of ``coordinates``."""

    version: str = Field(description="changes whenever the stored road network does")
    count: int
    ids: list[int]
    names: list[str | None]
    road_refs: list[str]
    points: list[int] = Field(description="how many positions each segment's line has")
    coordinates: list[float] = Field(
        description="every position, segment after segment: lon, lat, lon, lat, ... (WGS 84), "
        f"rounded to {COORDINATE_DIGITS} decimals"
    )


class RecentStatsQuery(QueryModel):
    pollutant: HotPollutant = "pm25"
    minutes: int = Field(60, ge=1, le=7 * 24 * 60, description="the window: the last N minutes")
    min_readings: int = Field(1, ge=1, le=1_000_000, description="leave out quieter segments")


class RecentSegmentStats(BaseModel):
    """Per segment with readings in the window, by columns, ordered by id: the count, mean and
    max of its valid (flag ``N``) readings of the pollutant. Segments absent have none."""

    pollutant: str
    since: datetime
    count: int
    ids: list[int]
    readings: list[int]
    means: list[float]
    maxes: list[float]


@dataclass(frozen=True, slots=True)
class _Encoded:
    version: str
    etag: str
    body: bytes
    gzipped: bytes


class _NetworkCache:
    """The encoded network of the latest version seen; one request encodes it, others wait."""

    def __init__(self) -> None:
        self.encoded: _Encoded | None = None
        self.lock = asyncio.Lock()

    async def get(self, pool: asyncpg.Pool) -> _Encoded:
        version = await segment_network_version(pool)
        if self.encoded is not None and self.encoded.version == version:
            return self.encoded
        async with self.lock:
            if self.encoded is None or self.encoded.version != version:
                version, columns = await load_segment_network(pool)
                self.encoded = await asyncio.to_thread(_encode, version, columns)
            return self.encoded


@router.get(
    "/geometry",
    response_model=None,
    responses={
        200: {"model": SegmentNetwork, "description": "the road network"},
        304: {"description": "the network the If-None-Match ETag names is still current"},
    },
)
async def get_segment_geometry(request: Request, pool: PoolDep) -> Response:
    """Every road segment's id, name, road and line, without statistics: what a map needs to
    draw the network once (``/segments/recent`` then colours the segments with readings).
    Answers 304 to a matching ``If-None-Match``; gzipped when the client accepts it."""
    cache: _NetworkCache | None = getattr(request.app.state, "segment_network", None)
    if cache is None:
        cache = request.app.state.segment_network = _NetworkCache()
    encoded = await cache.get(pool)
    headers = {
        "ETag": encoded.etag,
        "Cache-Control": f"private, max-age={MAX_AGE_S}",
        # Authorization: a browser must not hand the cached network to a request without it.
        "Vary": "Accept-Encoding, Authorization",
    }
    if _matches(request.headers.get("if-none-match"), encoded.etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(encoded.gzipped, media_type="application/json", headers=headers)
    return Response(encoded.body, media_type="application/json", headers=headers)


@router.get("/recent", response_model=RecentSegmentStats)
async def get_recent_segment_stats(
    pool: PoolDep, query: Annotated[RecentStatsQuery, Query()]
) -> RecentSegmentStats:
    """The count, mean and max of each segment's valid readings of ``pollutant`` over the last
    ``minutes``, for the segments with at least ``min_readings``: the statistics of
    ``GET /api/v1/segments`` without the segments' fields, in one answer (it holds only the
    segments with readings), aggregated from the window's readings alone."""
    since = datetime.now(UTC) - timedelta(minutes=query.minutes)
    rows = await recent_segment_stats(
        pool, pollutant=query.pollutant, since=since, min_readings=query.min_readings
    )
    return RecentSegmentStats(
        pollutant=query.pollutant,
        since=since,
        count=len(rows),
        ids=[r["id"] for r in rows],
        readings=[r["readings"] for r in rows],
        means=[r["mean"] for r in rows],
        maxes=[r["max"] for r in rows],
    )


def _encode(version: str, columns: dict[str, list[Any]]) -> _Encoded:
    """The JSON body of :class:`SegmentNetwork`, plain and gzipped (CPU work: run in a thread)."""
    positions = np.column_stack(
        [
            np.asarray(columns["lons"], dtype=np.float64),
            np.asarray(columns["lats"], dtype=np.float64),
        ]
    )
    network = {
        "version": version,
        "count": len(columns["ids"]),
        "ids": columns["ids"],
        "names": columns["names"],
        "road_refs": columns["road_refs"],
        "points": columns["points"],
        "coordinates": np.round(positions, COORDINATE_DIGITS).ravel().tolist(),
    }
    body = json.dumps(network, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha256(f"{FORMAT}:{version}".encode()).hexdigest()[:32]
    # Weak: the plain and the gzipped body are the same resource but not the same bytes.
    etag = f'W/"{digest}"'
    return _Encoded(version, etag, body, gzip.compress(body, compresslevel=6))


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags
