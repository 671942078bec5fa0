"""Roads as read from a network file, and the fixed-length segments they are split into."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Coords", "Road", "Segment"]

#: A polyline as (lon, lat) pairs, WGS-84 degrees.
Coords = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Road:
    """One line of a road network: at least two distinct (lon, lat) positions."""

    road_ref: str
    name: str | None
    highway: str | None
    coords: Coords


@dataclass(frozen=True, slots=True)
class Segment:
    """Piece number ``seq`` (from 0) of the road ``road_ref``, ``length_m`` metres long."""

    road_ref: str
    seq: int
    name: str | None
    highway: str | None
    coords: Coords
    length_m: float
