"""Roads from a GeoJSON FeatureCollection of LineStrings and MultiLineStrings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from telemetry.errors import RoadNetworkError
from telemetry.roads.model import Coords, Road

__all__ = ["read_geojson"]

_LINE_TYPES = ("LineString", "MultiLineString")


def read_geojson(path: Path) -> list[Road]:
    """Read every LineString (and each part of every MultiLineString) of ``path`` as a road.

    ``road_ref`` is the feature's ``id``, else its ``id`` or ``osm_id`` property, else its
    position in the file; a MultiLineString's parts get ``"<ref>/<part>"``. ``name`` and
    ``highway`` come from the properties. Features of other geometry types are skipped.
    Raises :class:`RoadNetworkError` naming the feature and the problem when the file is not
    such a collection, a line is malformed or out of range, or no line is found.
    """
    try:
        with path.open("rb") as fh:
            document = json.load(fh)
    except OSError as exc:
        raise RoadNetworkError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise RoadNetworkError(f"{path}: not valid JSON: {exc}") from exc

    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise RoadNetworkError(f"{path}: not a GeoJSON FeatureCollection")
    features = document.get("features")
    if not isinstance(features, list):
        raise RoadNetworkError(f"{path}: FeatureCollection has no 'features' list")

    roads: list[Road] = []
    seen: dict[str, int] = {}
    for index, feature in enumerate(features):
        where = f"{path.name}: feature {index}"
        for road in _feature_roads(feature, index, where):
            if road.road_ref in seen:
                raise RoadNetworkError(
                    f"{where}: road id {road.road_ref!r} repeats feature {seen[road.road_ref]}"
                )
            seen[road.road_ref] = index
            roads.append(road)
    if not roads:
        raise RoadNetworkError(f"{path}: no LineString or MultiLineString features")
    return roads


def _feature_roads(feature: Any, index: int, where: str) -> list[Road]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise RoadNetworkError(f"{where}: not a GeoJSON Feature object")
    geometry = feature.get("geometry")
    if geometry is None:
        return []
    if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
        raise RoadNetworkError(f"{where}: geometry is not a GeoJSON geometry object")
    if geometry["type"] not in _LINE_TYPES:
        return []

    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        raise RoadNetworkError(f"{where}: 'properties' is not an object")
    ref = _road_ref(feature, properties, index)
    where = f"{where} (id {ref!r})"
    name = _text(properties.get("name"))
    highway = _text(properties.get("highway"))

    coordinates = geometry.get("coordinates")
    if geometry["type"] == "LineString":
        return [Road(ref, name, highway, _line(coordinates, where))]
    if not isinstance(coordinates, list) or not coordinates:
        raise RoadNetworkError(f"{where}: MultiLineString coordinates must be a non-empty list")
    return [
        Road(f"{ref}/{part}", name, highway, _line(line, f"{where} part {part}"))
        for part, line in enumerate(coordinates)
    ]


def _road_ref(feature: dict[str, Any], properties: dict[str, Any], index: int) -> str:
    for value in (feature.get("id"), properties.get("id"), properties.get("osm_id")):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return str(index)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _line(coordinates: Any, where: str) -> Coords:
    if not isinstance(coordinates, list):
        raise RoadNetworkError(f"{where}: coordinates must be a list of positions")
    points: list[tuple[float, float]] = []
    for number, position in enumerate(coordinates):
        lon, lat = _position(position, f"{where}: position {number}")
        if not points or points[-1] != (lon, lat):
            points.append((lon, lat))
    if len(points) < 2:
        raise RoadNetworkError(
            f"{where}: a line needs at least 2 distinct positions, found {len(points)}"
        )
    return tuple(points)


def _position(position: Any, where: str) -> tuple[float, float]:
    if not isinstance(position, list) or len(position) < 2:
        raise RoadNetworkError(f"{where}: expected [lon, lat], got {position!r}")
    lon, lat = position[0], position[1]
    for value in (lon, lat):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RoadNetworkError(f"{where}: coordinates must be numbers, got {position!r}")
        if not math.isfinite(value):
            raise RoadNetworkError(f"{where}: coordinates must be finite, got {position!r}")
    if not -180.0 <= lon <= 180.0:
        raise RoadNetworkError(f"{where}: longitude {lon} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise RoadNetworkError(f"{where}: latitude {lat} is outside [-90, 90]")
    return float(lon), float(lat)
