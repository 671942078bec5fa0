"""The local background a hotspot is measured against: a rolling low percentile.

Mobile-monitoring practice estimates background as a flat or rolling low percentile of the
recent time series (docs/domain.md §5.2); here it is the ``percentile``-th percentile of the
fleet's accepted readings over the last ``window_s`` seconds. :func:`background_level` is the
maths; :class:`BackgroundWindow` is the bounded buffer of recent readings the worker owns and
feeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from telemetry.columns import FloatArray, IntArray

__all__ = ["BackgroundWindow", "background_level"]


def background_level(
    ts_us: IntArray,
    values: FloatArray,
    *,
    now_us: int,
    window_s: float,
    percentile: float,
    min_samples: int,
) -> float:
    """The ``percentile``-th percentile of the finite values measured in [now - window, now].

    NaN when fewer than ``min_samples`` finite values fall in the window.
    """
    ts_us = np.asarray(ts_us, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    start_us = now_us - round(window_s * 1e6)
    inside = (ts_us >= start_us) & (ts_us <= now_us) & np.isfinite(values)
    if np.count_nonzero(inside) < max(min_samples, 1):
        return math.nan
    return float(np.percentile(values[inside], percentile))


class _Ring:
    """A fixed-capacity buffer of (ts_us, value) pairs that overwrites its oldest entries."""

    __slots__ = ("head", "size", "ts_us", "values")

    def __init__(self, capacity: int) -> None:
        self.ts_us = np.zeros(capacity, dtype=np.int64)
        self.values = np.zeros(capacity, dtype=np.float64)
        self.head = 0  # the next slot to write
        self.size = 0

    def extend(self, ts_us: IntArray, values: FloatArray) -> None:
        capacity = self.ts_us.shape[0]
        if ts_us.shape[0] > capacity:
            ts_us, values = ts_us[-capacity:], values[-capacity:]
        count = ts_us.shape[0]
        slots = (self.head + np.arange(count)) % capacity
        self.ts_us[slots] = ts_us
        self.values[slots] = values
        self.head = int((self.head + count) % capacity)
        self.size = min(self.size + count, capacity)


class BackgroundWindow:
    """Recently accepted readings per pollutant, in a bounded ring buffer each.

    Only finite values are kept. When a pollutant's buffer is full its oldest entries are
    dropped, so ``capacity`` bounds memory (16 bytes per entry and pollutant) and, at high
    rates, shortens the effective window below ``window_s``.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._rings: dict[str, _Ring] = {}

    def update(self, ts_us: IntArray, values_by_pollutant: Mapping[str, FloatArray]) -> None:
        """Append readings: ``ts_us`` and every array in ``values_by_pollutant`` are aligned."""
        ts_us = np.asarray(ts_us, dtype=np.int64)
        for pollutant, raw in values_by_pollutant.items():
            values = np.asarray(raw, dtype=np.float64)
            if values.shape != ts_us.shape:
                raise ValueError(
                    f"{pollutant}: {values.shape[0]} values for {ts_us.shape[0]} times"
                )
            finite = np.isfinite(values)
            ring = self._rings.get(pollutant)
            if ring is None:
                ring = self._rings[pollutant] = _Ring(self.capacity)
            ring.extend(ts_us[finite], values[finite])

    def __len__(self) -> int:
        """The number of values held, over all pollutants."""
        return sum(ring.size for ring in self._rings.values())

    def levels(
        self, now_us: int, *, window_s: float, percentile: float, min_samples: int
    ) -> dict[str, float]:
        """The background of every pollutant seen so far (NaN where there are too few values)."""
        return {
            pollutant: background_level(
                ring.ts_us[: ring.size],
                ring.values[: ring.size],
                now_us=now_us,
                window_s=window_s,
                percentile=percentile,
                min_samples=min_samples,
            )
            for pollutant, ring in self._rings.items()
        }
