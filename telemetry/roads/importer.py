"""Importing a road network file into ``road_segments``: read, split, upsert."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from telemetry.db import create_pool
from telemetry.errors import RoadNetworkError
from telemetry.roads.geojson import read_geojson
from telemetry.roads.model import Road, Segment
from telemetry.roads.osm import read_osm
from telemetry.roads.repository import upsert_segments
from telemetry.roads.split import split_roads
from telemetry.settings import Settings

__all__ = ["ImportReport", "import_roads", "read_roads"]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one import stored."""

    source: str
    roads: int
    segments: int
    total_length_km: float

    def __str__(self) -> str:
        return (
            f"imported {self.roads} roads as {self.segments} segments "
            f"({self.total_length_km:.2f} km) from source {self.source!r}"
        )


def read_roads(path: Path) -> list[Road]:
    """Read ``path`` with the reader its suffix names: .geojson/.json, .osm, .osm.pbf/.pbf."""
    name = path.name.lower()
    if name.endswith((".geojson", ".json")):
        return read_geojson(path)
    if name.endswith((".osm", ".pbf")):
        return read_osm(path)
    raise RoadNetworkError(
        f"{path}: unknown road network format; expected .geojson, .json, .osm or .osm.pbf"
    )


async def import_roads(
    settings: Settings, path: Path, *, source: str | None = None, segment_length_m: float
) -> ImportReport:
    """Read ``path``, split its roads into ``segment_length_m`` segments and store them.

    ``source`` (default: the file name) names the import; importing the same source again
    keeps the ids of segments that are still there and removes those that are not. Everything
    is written in one transaction.
    """
    roads, pieces = await asyncio.to_thread(_read_and_split, path, segment_length_m)
    source = source or path.name
    pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await upsert_segments(conn, source, pieces)
    finally:
        await pool.close()
    return ImportReport(
        source=source,
        roads=len(roads),
        segments=len(pieces),
        total_length_km=sum(s.length_m for s in pieces) / 1000.0,
    )


def _read_and_split(path: Path, segment_length_m: float) -> tuple[list[Road], list[Segment]]:
    roads = read_roads(path)
    return roads, split_roads(roads, segment_length_m)
