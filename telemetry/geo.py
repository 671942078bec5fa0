"""Geodesy for city-scale work: great-circle distance and bearing, and a local equirectangular
projection (metres east/north of an origin), exact enough within tens of kilometres."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from telemetry.columns import FloatArray

__all__ = [
    "EARTH_RADIUS_M",
    "destination",
    "distance_bearing",
    "from_local_m",
    "haversine_m",
    "to_local_m",
]

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
_M_PER_DEG = math.pi / 180.0 * EARTH_RADIUS_M


def haversine_m(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> FloatArray:
    """Great-circle distance in metres between points given in degrees (broadcasting)."""
    return distance_bearing(lat1, lon1, lat2, lon2)[0]


def distance_bearing(
    lat0: npt.ArrayLike, lon0: npt.ArrayLike, lat: npt.ArrayLike, lon: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Haversine distance (m) and initial bearing (degrees clockwise from north, [0, 360))
    from (lat0, lon0) to (lat, lon); the arguments broadcast against each other."""
    p0, p1 = np.radians(lat0), np.radians(lat)
    dlon = np.radians(np.asarray(lon, dtype=np.float64) - np.asarray(lon0, dtype=np.float64))
    h = np.sin((p1 - p0) / 2) ** 2 + np.cos(p0) * np.cos(p1) * np.sin(dlon / 2) ** 2
    distance = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    y = np.sin(dlon) * np.cos(p1)
    x = np.cos(p0) * np.sin(p1) - np.sin(p0) * np.cos(p1) * np.cos(dlon)
    bearing = np.degrees(np.arctan2(y, x)) % 360.0
    return np.asarray(distance, dtype=np.float64), np.asarray(bearing, dtype=np.float64)


def destination(
    lat0: npt.ArrayLike, lon0: npt.ArrayLike, bearing_deg: npt.ArrayLike, distance_m: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """The point ``distance_m`` from (lat0, lon0) along ``bearing_deg`` (great circle)."""
    p0, l0 = np.radians(lat0), np.radians(lon0)
    theta, delta = (
        np.radians(bearing_deg),
        np.asarray(distance_m, dtype=np.float64) / EARTH_RADIUS_M,
    )
    p1 = np.arcsin(np.sin(p0) * np.cos(delta) + np.cos(p0) * np.sin(delta) * np.cos(theta))
    l1 = l0 + np.arctan2(
        np.sin(theta) * np.sin(delta) * np.cos(p0), np.cos(delta) - np.sin(p0) * np.sin(p1)
    )
    lon = (np.degrees(l1) + 540.0) % 360.0 - 180.0
    return np.asarray(np.degrees(p1), dtype=np.float64), np.asarray(lon, dtype=np.float64)


def to_local_m(
    lon: npt.ArrayLike, lat: npt.ArrayLike, lon0: float, lat0: float
) -> tuple[FloatArray, FloatArray]:
    """Degrees to (x east, y north) metres about (lon0, lat0)."""
    x = (np.asarray(lon, dtype=np.float64) - lon0) * _M_PER_DEG * math.cos(math.radians(lat0))
    y = (np.asarray(lat, dtype=np.float64) - lat0) * _M_PER_DEG
    return x, y


def from_local_m(
    x: npt.ArrayLike, y: npt.ArrayLike, lon0: float, lat0: float
) -> tuple[FloatArray, FloatArray]:
    """The inverse of :func:`to_local_m`."""
    lon = lon0 + np.asarray(x, dtype=np.float64) / (_M_PER_DEG * math.cos(math.radians(lat0)))
    lat = lat0 + np.asarray(y, dtype=np.float64) / _M_PER_DEG
    return lon, lat
