"""Splitting roads into segments of (nearly) equal length along the line."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from telemetry.errors import RoadNetworkError
from telemetry.geo import EARTH_RADIUS_M
from telemetry.roads.model import Road, Segment

__all__ = ["road_length_m", "split_road", "split_roads"]

#: Mean Earth radius (IUGG), metres.

# Interior vertices closer than this to a cut point are dropped: the cut point replaces them.
_VERTEX_EPS_M = 1e-6


def _cumulative_m(
    lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Distance along the line at each vertex, each step measured in the equirectangular
    projection about its own mid-latitude (exact enough for steps of a few kilometres)."""
    mid_lat = np.radians((lat[1:] + lat[:-1]) / 2)
    dx = np.radians(np.diff(lon)) * np.cos(mid_lat)
    dy = np.radians(np.diff(lat))
    steps = EARTH_RADIUS_M * np.hypot(dx, dy)
    return np.concatenate(([0.0], np.cumsum(steps)))


def road_length_m(road: Road) -> float:
    """The road's length along the line, in metres."""
    coords = np.asarray(road.coords, dtype=np.float64)
    return float(_cumulative_m(coords[:, 0], coords[:, 1])[-1])


def split_road(road: Road, length_m: float) -> list[Segment]:
    """Cut ``road`` into ``max(1, round(L / length_m))`` pieces of equal length along the line.

    Cut points are interpolated on the polyline; the road's own vertices between two cuts are
    kept, so each segment follows the road exactly. ``seq`` numbers the pieces from the road's
    first position.
    """
    if not length_m > 0:
        raise ValueError(f"segment length must be positive, got {length_m}")
    coords = np.asarray(road.coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[0] < 2 or coords.shape[1] != 2:
        raise RoadNetworkError(f"road {road.road_ref!r}: needs at least two (lon, lat) positions")
    lon, lat = coords[:, 0], coords[:, 1]
    along = _cumulative_m(lon, lat)
    keep = np.concatenate(([True], np.diff(along) > 0))  # repeated positions
    lon, lat, along = lon[keep], lat[keep], along[keep]
    total = float(along[-1])
    if not total > 0:
        raise RoadNetworkError(f"road {road.road_ref!r}: has zero length")

    pieces = max(1, round(total / length_m))
    cuts = np.linspace(0.0, total, pieces + 1)
    cut_lon = np.interp(cuts, along, lon)
    cut_lat = np.interp(cuts, along, lat)
    # Piece k holds the interior vertices strictly between cuts k and k + 1.
    owner = np.searchsorted(cuts, along, side="right") - 1
    near_cut = (along - cuts[owner] <= _VERTEX_EPS_M) | (
        cuts[np.minimum(owner + 1, pieces)] - along <= _VERTEX_EPS_M
    )
    interior = ~near_cut
    bounds = np.searchsorted(owner[interior], np.arange(pieces + 1), side="left")
    inner = np.column_stack((lon[interior], lat[interior]))

    piece_length_m = total / pieces
    segments: list[Segment] = []
    for k in range(pieces):
        points = [(float(cut_lon[k]), float(cut_lat[k]))]
        points.extend((float(x), float(y)) for x, y in inner[bounds[k] : bounds[k + 1]])
        points.append((float(cut_lon[k + 1]), float(cut_lat[k + 1])))
        segments.append(
            Segment(road.road_ref, k, road.name, road.highway, tuple(points), piece_length_m)
        )
    return segments


def split_roads(roads: Iterable[Road], length_m: float) -> list[Segment]:
    """:func:`split_road` for each road, in order."""
    return [segment for road in roads for segment in split_road(road, length_m)]
