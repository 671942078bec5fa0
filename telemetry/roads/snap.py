"""Snapping readings to the nearest road segment: pure numpy/scipy, no I/O.

Segments are projected once to local metres (equirectangular about the network's centre, which
is accurate to well under a percent across a city) and broken into straight pieces of at most
``max_piece_m``. A k-d tree over the piece midpoints yields candidates for every point at once;
exact point-to-piece distances then pick the nearest. Where the vehicle's heading is known,
pieces that cross it at more than ``max_heading_diff_deg`` are passed over, so a vehicle driving
through an intersection stays on its street instead of snapping to the cross street (the
problem the Utrecht Air View processing solves offline by dropping segments not fully inside
the drive's buffer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from telemetry.columns import FloatArray, IntArray
from telemetry.geo import to_local_m

__all__ = ["SegmentIndex"]


class SegmentIndex:
    """Road segments indexed for snapping; build with :meth:`build`."""

    def __init__(
        self,
        segment_ids: IntArray,
        origin: tuple[float, float],
        starts: FloatArray,
        ends: FloatArray,
        piece_segment: IntArray,
        candidates: int,
    ) -> None:
        self._segment_ids = segment_ids
        self._segment_ids.flags.writeable = False
        self._lon0, self._lat0 = origin
        self._pieces = len(starts)
        # Pieces as coordinate columns, padded with one zero piece at index `pieces` (what the
        # tree returns for a missing neighbour), so gathers need no masking first.
        pad = np.zeros((1, 2))
        starts_p, ends_p = np.vstack((starts, pad)), np.vstack((ends, pad))
        self._ax, self._ay = starts_p[:, 0].copy(), starts_p[:, 1].copy()
        self._dx, self._dy = ends_p[:, 0] - self._ax, ends_p[:, 1] - self._ay
        length2 = self._dx**2 + self._dy**2
        # A zero-length piece is a point: t = 0 measures the distance to its start.
        self._inv_length2 = np.divide(1.0, length2, out=np.zeros_like(length2), where=length2 > 0)
        self._piece_segment = piece_segment
        self._reach_m = float(np.sqrt(length2.max()) / 2)
        self._candidates = max(1, min(candidates, self._pieces))
        self._tree = cKDTree((starts + ends) / 2) if self._pieces else None

    @classmethod
    def build(
        cls,
        segments: Iterable[tuple[int, Sequence[tuple[float, float]]]],
        *,
        max_piece_m: float = 20.0,
        candidates: int = 16,
    ) -> Self:
        """Index ``(segment_id, [(lon, lat), ...])`` pairs.

        Straight pieces longer than ``max_piece_m`` are subdivided, which keeps the candidate
        search radius small; ``candidates`` is how many nearby pieces each point is checked
        against.
        """
        if not max_piece_m > 0:
            raise ValueError(f"max_piece_m must be positive, got {max_piece_m}")
        ids: list[int] = []
        lines: list[npt.NDArray[np.float64]] = []
        for segment_id, coords in segments:
            line = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
            if len(line) == 0:
                continue
            if len(line) == 1:  # a degenerate segment still snaps, as a point
                line = np.vstack((line, line))
            ids.append(int(segment_id))
            lines.append(line)
        segment_ids = np.asarray(ids, dtype=np.int64)
        if not lines:
            empty = np.empty((0, 2), dtype=np.float64)
            return cls(segment_ids, (0.0, 0.0), empty, empty, segment_ids.copy(), candidates)

        vertices = np.concatenate(lines)
        low, high = vertices.min(axis=0), vertices.max(axis=0)
        origin = (float((low[0] + high[0]) / 2), float((low[1] + high[1]) / 2))
        xy = _project(vertices, origin)

        counts = np.array([len(line) for line in lines])
        owner = np.repeat(np.arange(len(lines)), counts)
        # Pieces join consecutive vertices of the same segment.
        joined = owner[1:] == owner[:-1]
        starts, ends, piece_owner = xy[:-1][joined], xy[1:][joined], owner[:-1][joined]

        # Subdivide long pieces into equal parts no longer than max_piece_m.
        parts = np.maximum(1, np.ceil(np.linalg.norm(ends - starts, axis=1) / max_piece_m))
        parts = parts.astype(np.int64)
        which = np.repeat(np.arange(len(starts)), parts)
        first = np.repeat(np.cumsum(parts) - parts, parts)
        step = (np.arange(len(which)) - first)[:, None]
        delta = ((ends - starts) / parts[:, None])[which]
        sub_starts = starts[which] + delta * step
        sub_ends = sub_starts + delta
        return cls(segment_ids, origin, sub_starts, sub_ends, piece_owner[which], candidates)

    def __len__(self) -> int:
        return len(self._segment_ids)

    @property
    def segment_ids(self) -> IntArray:
        """The indexed segment ids (read-only), in build order."""
        return self._segment_ids

    def snap(
        self,
        lon: FloatArray,
        lat: FloatArray,
        heading_deg: FloatArray | None,
        tolerance_m: float,
        max_heading_diff_deg: float = 45.0,
    ) -> tuple[IntArray, FloatArray]:
        """The nearest segment within ``tolerance_m`` of each point.

        Returns ``(segment_id, distance_m)``: the segment's id, ``-1`` where none is within
        tolerance (or the position is not finite), and the perpendicular distance in metres,
        NaN where there is no segment. Where ``heading_deg`` is finite, segments whose direction
        differs from it by more than ``max_heading_diff_deg`` (either way along the road) are
        only chosen when no other segment is within tolerance.
        """
        if not tolerance_m > 0:
            raise ValueError(f"tolerance_m must be positive, got {tolerance_m}")
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        if lon.shape != lat.shape or lon.ndim != 1:
            raise ValueError("lon and lat must be 1-D arrays of the same length")
        n = len(lon)
        segment_id = np.full(n, -1, dtype=np.int64)
        distance_m = np.full(n, np.nan, dtype=np.float64)
        if self._tree is None or n == 0:
            return segment_id, distance_m

        rows = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat))
        points = _project(np.column_stack((lon[rows], lat[rows])), (self._lon0, self._lat0))
        # Misses come back as index `pieces`: the padding piece, masked out by `found`.
        _, piece = self._tree.query(
            points, k=self._candidates, distance_upper_bound=tolerance_m + self._reach_m
        )
        piece = piece.reshape(len(rows), self._candidates)
        found = piece < self._pieces

        # Exact distance from every point to every candidate piece: (rows, candidates).
        dx, dy = self._dx[piece], self._dy[piece]
        ox = points[:, 0].copy()[:, None] - self._ax[piece]
        oy = points[:, 1].copy()[:, None] - self._ay[piece]
        inv_length2 = self._inv_length2[piece]
        t = (ox * dx + oy * dy) * inv_length2
        np.clip(t, 0.0, 1.0, out=t)
        ox -= dx * t
        oy -= dy * t
        dist2 = ox * ox + oy * oy
        usable = found & (dist2 <= tolerance_m * tolerance_m)

        if heading_deg is not None:
            heading = np.radians(np.asarray(heading_deg, dtype=np.float64)[rows])
            # |cos(bearing - heading)| >= cos(limit) compares directions modulo 180 degrees.
            along = dx * np.sin(heading)[:, None] + dy * np.cos(heading)[:, None]
            limit = np.cos(np.radians(min(max_heading_diff_deg, 90.0)))
            aligned = usable & (along * along * inv_length2 >= limit * limit)  # NaN: False
            usable = np.where(aligned.any(axis=1, keepdims=True), aligned, usable)

        dist2[~usable] = np.inf
        best = np.argmin(dist2, axis=1)
        hit = usable.any(axis=1)
        pick = np.arange(len(rows))[hit], best[hit]
        segment_id[rows[hit]] = self._segment_ids[self._piece_segment[piece[pick]]]
        distance_m[rows[hit]] = np.sqrt(dist2[pick])
        return segment_id, distance_m


def _project(lonlat: npt.NDArray[np.float64], origin: tuple[float, float]) -> FloatArray:
    """(lon, lat) degrees to (x east, y north) metres about ``origin``."""
    x, y = to_local_m(lonlat[:, 0], lonlat[:, 1], *origin)
    return np.column_stack((x, y))
