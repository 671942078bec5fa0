"""Roads from OpenStreetMap files (.osm XML and .osm.pbf), read with pyosmium."""

from __future__ import annotations

from pathlib import Path

import osmium
import osmium.osm

from telemetry.errors import RoadNetworkError
from telemetry.roads.model import Road

__all__ = ["DRIVABLE_HIGHWAYS", "read_osm"]

_MAIN = (
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "tertiary",
)
#: ``highway`` values of ways a monitoring vehicle can drive on.
DRIVABLE_HIGHWAYS: frozenset[str] = frozenset(
    (
        *_MAIN,
        *(f"{kind}_link" for kind in _MAIN),
        "unclassified",
        "residential",
        "living_street",
        "service",
    )
)


def read_osm(path: Path) -> list[Road]:
    """Read the drivable ways of an OSM file as roads with ref ``"way/<id>"``.

    A way is drivable when its ``highway`` tag is in :data:`DRIVABLE_HIGHWAYS` and it is not
    mapped as an area (``area=yes``). Node positions are resolved from the file; nodes missing
    from it (ways cut by an extract's boundary) are left out, and a way left with fewer than
    two distinct positions is skipped. Raises :class:`RoadNetworkError` when the file cannot be
    read or has no drivable way.
    """
    if not path.is_file():
        raise RoadNetworkError(f"{path}: no such file")
    processor = (
        osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
        .with_filter(osmium.filter.TagFilter(*(("highway", kind) for kind in DRIVABLE_HIGHWAYS)))
    )
    roads: list[Road] = []
    try:
        for way in processor:
            if not isinstance(way, osmium.osm.Way) or way.tags.get("area") == "yes":
                continue
            coords: list[tuple[float, float]] = []
            for node in way.nodes:
                location = node.location
                if not location.valid():
                    continue
                point = (location.lon, location.lat)
                if not coords or coords[-1] != point:
                    coords.append(point)
            if len(coords) >= 2:
                roads.append(
                    Road(f"way/{way.id}", way.tags.get("name"), way.tags["highway"], tuple(coords))
                )
    except (RuntimeError, OSError) as exc:
        raise RoadNetworkError(f"{path}: cannot read as OpenStreetMap data: {exc}") from exc
    if not roads:
        raise RoadNetworkError(f"{path}: no drivable highway ways with node positions")
    return roads
