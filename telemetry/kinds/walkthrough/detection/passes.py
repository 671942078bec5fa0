"""Drive passes: one vehicle's uninterrupted run of readings along one road segment.

A pass is the unit that detection compares with limits and with the background, following
mobile-monitoring practice (per-segment "drive-pass means", docs/domain.md §5.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from telemetry.columns import FloatArray, IntArray

__all__ = ["Passes", "find_passes", "vehicle_time_order"]

IndexArray = npt.NDArray[np.intp]


def vehicle_time_order(
    vehicle_id: npt.NDArray[np.object_], ts_us: IntArray
) -> tuple[IndexArray, IndexArray]:
    """The stable permutation sorting readings by (vehicle, ts), and each reading's vehicle code.

    Readings with the same vehicle and time keep their input order. Vehicle codes are small
    integers, equal for equal ids, so that comparisons along the sorted order are cheap.
    """
    _, codes = np.unique(np.asarray(vehicle_id, dtype=str), return_inverse=True)
    codes = codes.reshape(-1).astype(np.intp)
    order = np.lexsort((np.asarray(ts_us, dtype=np.int64), codes)).astype(np.intp)
    return order, codes


@dataclass(frozen=True, slots=True, eq=False)
class Passes:
    """The passes found in some readings, one element per pass in (vehicle, first_us) order.

    ``order`` sorts the input readings by (vehicle, ts); pass ``i`` is the sorted readings
    ``order[starts[i]:starts[i + 1]]``.
    """

    order: IndexArray
    starts: IndexArray
    vehicle_id: npt.NDArray[np.object_]
    segment_id: IntArray
    first_us: IntArray
    last_us: IntArray
    readings: IntArray

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def stats(self, values: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per pass: the number of finite values, their mean and their maximum.

        ``values`` is aligned with the readings given to :func:`find_passes`. NaN values are
        ignored; the mean and maximum are NaN for a pass without any value.
        """
        if len(self) == 0:
            empty = np.empty(0, dtype=np.float64)
            return empty, empty.copy(), empty.copy()
        ordered = np.asarray(values, dtype=np.float64)[self.order]
        finite = np.isfinite(ordered)
        n = np.add.reduceat(finite.astype(np.float64), self.starts)
        total = np.add.reduceat(np.where(finite, ordered, 0.0), self.starts)
        mean = np.divide(total, n, out=np.full(n.shape, np.nan), where=n > 0)
        peak = np.fmax.reduceat(np.where(finite, ordered, np.nan), self.starts)
        return n, mean, peak


def find_passes(
    vehicle_id: npt.NDArray[np.object_],
    ts_us: IntArray,
    segment_id: IntArray,
    *,
    max_gap_s: float,
) -> Passes:
    """Split readings into passes.

    After sorting by (vehicle, ts), a pass is a maximal run of one vehicle's consecutive
    readings on one segment in which no two neighbours are more than ``max_gap_s`` apart.
    The arrays are aligned and may be in any order. Only the readings given count as
    neighbours: a caller that drops unusable readings first lets a pass bridge them, within
    the gap limit.
    """
    ts_us = np.asarray(ts_us, dtype=np.int64)
    segment_id = np.asarray(segment_id, dtype=np.int64)
    order, codes = vehicle_time_order(vehicle_id, ts_us)
    ts_sorted = ts_us[order]
    seg_sorted = segment_id[order]
    code_sorted = codes[order]

    boundary = np.ones(ts_sorted.shape[0], dtype=bool)
    if ts_sorted.shape[0] > 1:
        max_gap_us = max_gap_s * 1e6
        boundary[1:] = (
            (code_sorted[1:] != code_sorted[:-1])
            | (seg_sorted[1:] != seg_sorted[:-1])
            | (np.diff(ts_sorted) > max_gap_us)
        )
    starts = np.flatnonzero(boundary).astype(np.intp)
    ends = np.append(starts[1:], ts_sorted.shape[0]).astype(np.intp)
    return Passes(
        order=order,
        starts=starts,
        vehicle_id=np.asarray(vehicle_id, dtype=object)[order[starts]],
        segment_id=seg_sorted[starts],
        first_us=ts_sorted[starts],
        last_us=ts_sorted[ends - 1] if starts.shape[0] else ts_sorted[:0],
        readings=(ends - starts).astype(np.int64),
    )
