"""A drivable street graph read from a GeoJSON FeatureCollection of LineStrings.

Every vertex is a node; streets that share a coordinate exactly share the node there, so a
vehicle reaching it can turn onto the other street. Edges are directed and come in pairs
(``e`` and ``e ^ 1`` are the two directions of one piece of street). Positions are kept in a
local flat projection in metres (x east, y north), accurate to well under a metre over a city.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from telemetry.errors import RoadNetworkError
from telemetry.geo import from_local_m, to_local_m

__all__ = ["RoadNetwork", "load_network", "network_from_geojson"]


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RoadNetwork:
    """Nodes, directed edges and the projection between degrees and local metres."""

    lon0: float
    lat0: float
    node_xy: FloatArray  # (n_nodes, 2) metres
    edge_from: IntArray
    edge_to: IntArray
    edge_length_m: FloatArray
    edge_heading_deg: FloatArray  # compass bearing of travel, 0 = north, clockwise
    edge_street: IntArray  # index into ``street_names``
    street_names: tuple[str, ...]
    out_edges: tuple[tuple[int, ...], ...]  # per node: edges leaving it

    @property
    def edge_count(self) -> int:
        return int(self.edge_from.shape[0])

    def to_xy(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Degrees (WGS-84) to local metres."""
        return to_local_m(lon, lat, self.lon0, self.lat0)

    def to_lonlat(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Local metres to degrees (WGS-84)."""
        return from_local_m(x, y, self.lon0, self.lat0)

    def reverse(self, edge: int) -> int:
        """The same piece of street driven the other way."""
        return edge ^ 1

    def next_edge(self, edge: int, rng: np.random.Generator) -> int:
        """A random edge to continue on from the end of ``edge``, avoiding a U-turn when the node
        offers anything else (a dead end forces one)."""
        choices = [e for e in self.out_edges[int(self.edge_to[edge])] if e != edge ^ 1]
        if not choices:
            return edge ^ 1
        return choices[int(rng.integers(len(choices)))]

    def turn_deg(self, edge: int, following: int) -> float:
        """Absolute change of heading (0..180) when moving from ``edge`` onto ``following``."""
        delta = (self.edge_heading_deg[following] - self.edge_heading_deg[edge] + 180.0) % 360.0
        return abs(float(delta) - 180.0)

    def street_midpoint(self, street: int) -> tuple[float, float]:
        """(lon, lat) of the point halfway along a street's drawn length."""
        forward = np.flatnonzero(
            (self.edge_street == street) & (np.arange(self.edge_count) % 2 == 0)
        )
        lengths = self.edge_length_m[forward]
        half = lengths.sum() / 2.0
        cumulative = np.cumsum(lengths)
        i = int(np.searchsorted(cumulative, half))
        i = min(i, forward.shape[0] - 1)
        e = int(forward[i])
        into = half - (cumulative[i] - lengths[i])
        a, b = self.node_xy[self.edge_from[e]], self.node_xy[self.edge_to[e]]
        point = a + (b - a) * (into / self.edge_length_m[e])
        lon, lat = self.to_lonlat(point[0:1], point[1:2])
        return float(lon[0]), float(lat[0])

    def street_length_m(self, street: int) -> float:
        return float(self.edge_length_m[self.edge_street == street].sum() / 2.0)


def _lines(geometry: dict[str, Any]) -> list[list[list[float]]]:
    kind = geometry.get("type")
    if kind == "LineString":
        return [geometry["coordinates"]]
    if kind == "MultiLineString":
        return list(geometry["coordinates"])
    return []


def network_from_geojson(document: dict[str, Any]) -> RoadNetwork:
    """Build the graph from a parsed GeoJSON FeatureCollection (or raise RoadNetworkError)."""
    if document.get("type") != "FeatureCollection":
        raise RoadNetworkError("road file is not a GeoJSON FeatureCollection")
    polylines: list[tuple[str, list[tuple[float, float]]]] = []
    for number, feature in enumerate(document.get("features") or []):
        properties = feature.get("properties") or {}
        name = str(properties.get("name") or properties.get("ref") or f"road {number}")
        for line in _lines(feature.get("geometry") or {}):
            points = [(float(p[0]), float(p[1])) for p in line if len(p) >= 2]
            if len(points) >= 2:
                polylines.append((name, points))
    if not polylines:
        raise RoadNetworkError("road file holds no LineString features")

    all_points = np.array([p for _, pts in polylines for p in pts], dtype=np.float64)
    lon0, lat0 = (float(v) for v in all_points.mean(axis=0))

    node_of: dict[tuple[float, float], int] = {}
    lonlat: list[tuple[float, float]] = []
    names: list[str] = []
    street_of: dict[str, int] = {}
    pairs: list[tuple[int, int, int]] = []
    for name, points in polylines:
        street = street_of.setdefault(name, len(names))
        if street == len(names):
            names.append(name)
        ids = []
        for p in points:
            node = node_of.setdefault(p, len(lonlat))
            if node == len(lonlat):
                lonlat.append(p)
            ids.append(node)
        for a, b in itertools.pairwise(ids):
            if a != b:
                pairs.append((a, b, street))
    if not pairs:
        raise RoadNetworkError("road file holds only zero-length lines")

    coords = np.array(lonlat, dtype=np.float64)
    x, y = to_local_m(coords[:, 0], coords[:, 1], lon0, lat0)
    node_xy = np.column_stack([x, y])

    undirected = np.array(pairs, dtype=np.int64)
    edge_from = np.empty(2 * len(pairs), dtype=np.int64)
    edge_to = np.empty_like(edge_from)
    edge_from[0::2], edge_to[0::2] = undirected[:, 0], undirected[:, 1]
    edge_from[1::2], edge_to[1::2] = undirected[:, 1], undirected[:, 0]
    delta = node_xy[edge_to] - node_xy[edge_from]
    length = np.hypot(delta[:, 0], delta[:, 1])
    heading = np.degrees(np.arctan2(delta[:, 0], delta[:, 1])) % 360.0
    edge_street = np.repeat(undirected[:, 2], 2)

    out: list[list[int]] = [[] for _ in range(len(lonlat))]
    for e, node in enumerate(edge_from.tolist()):
        out[node].append(e)

    return RoadNetwork(
        lon0=lon0,
        lat0=lat0,
        node_xy=node_xy,
        edge_from=edge_from,
        edge_to=edge_to,
        edge_length_m=length,
        edge_heading_deg=heading,
        edge_street=edge_street,
        street_names=tuple(names),
        out_edges=tuple(tuple(e) for e in out),
    )


def load_network(path: Path) -> RoadNetwork:
    """Read a GeoJSON road file into a :class:`RoadNetwork` (or raise RoadNetworkError)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RoadNetworkError(f"cannot read road file {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RoadNetworkError(f"road file {path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise RoadNetworkError(f"road file {path} is not a GeoJSON object")
    return network_from_geojson(document)
