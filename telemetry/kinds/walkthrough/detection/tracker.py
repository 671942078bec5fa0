"""Drive passes assembled across micro-batches.

At 1 Hz a vehicle contributes one reading to a 200 ms micro-batch, so passes found within one
batch are single readings. The tracker keeps each vehicle's *open* pass between batches and
extends it with the vehicle's next fragment when that continues on the same segment within
the gap limit. A pass is *closed* — and only then judged — when the vehicle moves to another
segment, pauses longer than the gap, or goes quiet.

Late readings (older than the vehicle's open pass) form passes of their own and are closed at
once: they never rewrite the pass in progress. Everything here is pure: arrays and ``now_us``
in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Self

import numpy as np
import numpy.typing as npt

from telemetry.columns import Columns, FloatArray, IntArray
from telemetry.kinds.walkthrough.detection.passes import find_passes
from telemetry.kinds.walkthrough.record import POLLUTANTS, WalkthroughBatch

__all__ = ["PassStats", "advance", "fragments"]


@dataclass(frozen=True, slots=True, eq=False)
class PassStats(Columns):
    """Passes with running statistics, one row per pass; per-pollutant columns follow
    :data:`telemetry.kinds.walkthrough.record.POLLUTANTS`."""

    vehicle_id: npt.NDArray[np.str_]
    segment_id: IntArray
    first_us: IntArray
    last_us: IntArray
    received_us: IntArray  # arrival of the pass's newest reading
    readings: IntArray
    n: FloatArray  # (passes, pollutants): finite values
    total: FloatArray  # their sum
    peak: FloatArray  # their maximum (NaN: none)

    def mean(self) -> FloatArray:
        return np.divide(self.total, self.n, out=np.full(self.n.shape, np.nan), where=self.n > 0)

    @classmethod
    def empty(cls) -> Self:
        p = len(POLLUTANTS)
        ints = np.empty(0, dtype=np.int64)
        return cls(
            vehicle_id=np.empty(0, dtype=str),
            segment_id=ints,
            first_us=ints,
            last_us=ints,
            received_us=ints,
            readings=ints,
            n=np.empty((0, p)),
            total=np.empty((0, p)),
            peak=np.empty((0, p)),
        )

    @classmethod
    def concat(cls, parts: list[Self]) -> Self:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )


def fragments(
    batch: WalkthroughBatch,
    segment_id: IntArray,
    usable: npt.NDArray[np.bool_],
    *,
    max_gap_s: float,
) -> PassStats:
    """The passes inside one batch, from its usable readings."""
    keep = np.flatnonzero(usable)
    if keep.shape[0] == 0:
        return PassStats.empty()
    found = find_passes(
        batch.vehicle_id[keep], batch.ts_us[keep], np.asarray(segment_id)[keep], max_gap_s=max_gap_s
    )
    stats = [found.stats(batch.pollutant(p)[keep]) for p in POLLUTANTS]
    received = np.maximum.reduceat(batch.received_us[keep][found.order], found.starts)
    return PassStats(
        vehicle_id=found.vehicle_id.astype(str),
        segment_id=found.segment_id,
        first_us=found.first_us,
        last_us=found.last_us,
        received_us=received.astype(np.int64),
        readings=found.readings,
        n=np.stack([s[0] for s in stats], axis=1),
        total=np.stack([np.where(s[0] > 0, s[1] * s[0], 0.0) for s in stats], axis=1),
        peak=np.stack([s[2] for s in stats], axis=1),
    )


def advance(
    open_passes: PassStats, batch: PassStats, *, now_us: int, max_gap_s: float
) -> tuple[PassStats, PassStats]:
    """Fold one batch's fragments (in (vehicle, first_us) order, as :func:`fragments` gives
    them) into the open passes. Returns (closed, still open).

    ``now_us`` is the arrival clock: an open pass whose newest reading arrived more than
    ``max_gap_s`` ago is closed, whatever its measurement times.
    """
    gap_us = int(max_gap_s * 1e6)
    f = batch
    nf = len(f)
    if len(open_passes) == 0:
        # Give the lookups below a row to point at; no fragment matches it.
        open_passes = PassStats.empty()
        probe = PassStats.concat([open_passes, _placeholder()])
    else:
        probe = open_passes
    # Each fragment's vehicle's open pass, if any (row -1 / placeholder 0 when none).
    order = np.argsort(probe.vehicle_id, kind="stable")
    sorted_vehicles = probe.vehicle_id[order]
    pos = np.minimum(np.searchsorted(sorted_vehicles, f.vehicle_id), len(order) - 1)
    matched = (sorted_vehicles[pos] == f.vehicle_id) & (len(open_passes) > 0)
    row = np.where(matched, order[pos], 0)

    late = matched & (f.first_us < probe.last_us[row])
    fresh = ~late
    new_vehicle = np.ones(nf, dtype=bool)
    new_vehicle[1:] = f.vehicle_id[1:] != f.vehicle_id[:-1]
    last_of_vehicle = np.ones(nf, dtype=bool)
    last_of_vehicle[:-1] = new_vehicle[1:]
    prev_late = np.zeros(nf, dtype=bool)
    prev_late[1:] = late[:-1]
    first_fresh = fresh & (new_vehicle | prev_late)  # late fragments sort first per vehicle
    last_fresh = fresh & last_of_vehicle

    continues = (
        first_fresh
        & matched
        & (probe.segment_id[row] == f.segment_id)
        & (f.first_us - probe.last_us[row] <= gap_us)
    )
    merged = _merge(f, open_passes, continues, row)

    touched = np.zeros(len(open_passes), dtype=bool)
    touched[row[first_fresh & matched]] = True
    absorbed = np.zeros(len(open_passes), dtype=bool)
    absorbed[row[continues]] = True
    stale = now_us - open_passes.received_us > gap_us

    closed = PassStats.concat(
        [
            merged.take(late | (fresh & ~last_fresh)),
            open_passes.take(touched & ~absorbed),
            open_passes.take(~touched & stale),
        ]
    )
    still_open = PassStats.concat([open_passes.take(~touched & ~stale), merged.take(last_fresh)])
    return closed, still_open


def _placeholder() -> PassStats:
    p = len(POLLUTANTS)
    zero = np.zeros(1, dtype=np.int64)
    return PassStats(
        vehicle_id=np.array([""]),
        segment_id=zero,
        first_us=zero,
        last_us=zero,
        received_us=zero,
        readings=zero,
        n=np.zeros((1, p)),
        total=np.zeros((1, p)),
        peak=np.full((1, p), np.nan),
    )


def _merge(
    f: PassStats, open_passes: PassStats, continues: npt.NDArray[np.bool_], row: IntArray
) -> PassStats:
    """``f`` with each continuing fragment extended backwards by its vehicle's open pass."""
    if not continues.any():
        return f
    i, o = np.flatnonzero(continues), row[continues]
    first_us, readings = f.first_us.copy(), f.readings.copy()
    n, total, peak = f.n.copy(), f.total.copy(), f.peak.copy()
    first_us[i] = open_passes.first_us[o]
    readings[i] += open_passes.readings[o]
    n[i] += open_passes.n[o]
    total[i] += open_passes.total[o]
    peak[i] = np.fmax(peak[i], open_passes.peak[o])
    return PassStats(
        vehicle_id=f.vehicle_id,
        segment_id=f.segment_id,
        first_us=first_us,
        last_us=f.last_us,
        received_us=f.received_us,
        readings=readings,
        n=n,
        total=total,
        peak=peak,
    )
