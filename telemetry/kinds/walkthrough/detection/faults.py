"""Sensor faults: a pollutant channel that reads the same value for too long (``flatline``), sits
at its range limit (``range_limit``) or jumps implausibly (``step``).

A faulty channel's value is kept in storage but not used by detection; the reading records
the first fault found (in the order of :data:`FAULTS`) and the pollutants it concerns. A run
of equal values carries across batches in :class:`FaultState` (each vehicle's newest reading
and, per pollutant, when its current value began). Readings older than their vehicle's newest
one judged so far (late uploads, redeliveries) are not judged and do not move the state.
Everything here is pure: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Self

import numpy as np
import numpy.typing as npt

from telemetry.columns import Columns, FloatArray, IntArray
from telemetry.kinds.walkthrough.detection.passes import vehicle_time_order
from telemetry.kinds.walkthrough.record import POLLUTANTS

__all__ = ["FAULTS", "FaultParams", "FaultState", "Faults", "sensor_faults"]

BoolArray = npt.NDArray[np.bool_]

#: The fault codes, in the order they take precedence on one reading.
FAULTS: tuple[str, ...] = ("range_limit", "step", "flatline")


@dataclass(frozen=True, slots=True)
class FaultParams:
    """``flatline_s``: a value unchanged this long (s) is a flat line; ``full_scale``: per
    pollutant, the upper range limit (a value at or above it is saturated); ``max_step``: per
    pollutant, the largest plausible change per second between neighbours at most
    ``max_gap_s`` apart. A pollutant missing from a table is not judged by that rule."""

    flatline_s: float
    full_scale: Mapping[str, float]
    max_step: Mapping[str, float]
    max_gap_s: float

    def __post_init__(self) -> None:
        for table in (self.full_scale, self.max_step):
            unknown = sorted(set(table) - set(POLLUTANTS))
            if unknown:
                raise ValueError(f"unknown pollutants {unknown}; expected some of {POLLUTANTS}")

    def table(self, values: Mapping[str, float]) -> FloatArray:
        """The per-pollutant table as a row in :data:`POLLUTANTS` order (NaN: not judged)."""
        return np.array([values.get(p, np.nan) for p in POLLUTANTS], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class FaultState(Columns):
    """Per vehicle: its newest judged reading's time and values, and per pollutant the time
    its current value began."""

    vehicle_id: npt.NDArray[np.str_]
    last_us: IntArray
    last: FloatArray  # (vehicles, pollutants)
    since_us: IntArray  # (vehicles, pollutants)

    @classmethod
    def empty(cls) -> Self:
        p = len(POLLUTANTS)
        return cls(
            vehicle_id=np.empty(0, dtype=str),
            last_us=np.empty(0, dtype=np.int64),
            last=np.empty((0, p)),
            since_us=np.empty((0, p), dtype=np.int64),
        )


@dataclass(frozen=True, slots=True)
class Faults:
    """Per reading: the first fault code (``''``: none), the faulty channels (readings ×
    pollutants) and their names joined by commas; and the state after the batch."""

    code: npt.NDArray[np.object_]
    channels: BoolArray
    pollutants: npt.NDArray[np.object_]
    state: FaultState


def sensor_faults(
    vehicle_id: npt.NDArray[np.object_],
    ts_us: IntArray,
    values: FloatArray,
    state: FaultState,
    params: FaultParams,
) -> Faults:
    """Judge readings (``values``: readings × pollutants, NaN absent) against the rules.

    - ``range_limit``: the value is at or above the pollutant's full scale;
    - ``step``: the change from the vehicle's previous reading exceeds ``max_step`` per second
      of time between them (judged when they are at most ``max_gap_s`` apart); the reading
      after a lone spike, which steps back, is marked too;
    - ``flatline``: the value (finite) has not changed for ``flatline_s`` or longer, counted
      from the first reading of the run, across batches.

    An absent value breaks a run and is never faulty.
    """
    n, p = values.shape[0], len(POLLUTANTS)
    ts_us = np.asarray(ts_us, dtype=np.int64)
    code = np.full(n, "", dtype=object)
    channels = np.zeros((n, p), dtype=bool)
    if n == 0:
        return Faults(code, channels, np.full(0, "", dtype=object), state)

    # Each reading's vehicle's state row (-1: none); late readings are not judged.
    vid = np.asarray(vehicle_id, dtype=str)
    row = np.full(n, -1, dtype=np.intp)
    newest = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    if len(state):
        order_s = np.argsort(state.vehicle_id, kind="stable")
        sorted_s = state.vehicle_id[order_s]
        pos = np.minimum(np.searchsorted(sorted_s, vid), sorted_s.shape[0] - 1)
        row = np.where(sorted_s[pos] == vid, order_s[pos], -1).astype(np.intp)
        newest = np.where(row >= 0, state.last_us[np.maximum(row, 0)], newest)
    judged = ts_us > newest
    keep = np.flatnonzero(judged)

    # The combined sequence: each known vehicle's state row, then its judged readings.
    seeds = np.unique(row[keep][row[keep] >= 0])
    m = seeds.shape[0]
    all_vid = np.concatenate([state.vehicle_id[seeds].astype(str), vid[keep]])
    all_ts = np.concatenate([state.last_us[seeds], ts_us[keep]])
    all_val = np.concatenate([state.last[seeds], values[keep]])
    is_seed = np.arange(m + keep.shape[0]) < m
    order, codes = vehicle_time_order(all_vid.astype(object), all_ts)
    # Seeds sort before their vehicle's readings (strictly older, stable order).
    c = codes[order]
    ts = all_ts[order]
    v = all_val[order]
    seed = is_seed[order]
    first = np.ones(c.shape[0], dtype=bool)
    first[1:] = c[1:] != c[:-1]

    prev = np.full_like(v, np.nan)
    prev[1:] = v[:-1]
    prev[first] = np.nan
    dt_s = np.zeros(c.shape[0])
    dt_s[1:] = (ts[1:] - ts[:-1]) / 1e6
    with np.errstate(invalid="ignore"):
        changed = ~(v == prev)  # NaN on either side counts as a change
    start = np.where(changed, ts[:, None], -1)
    seed_since = np.full((c.shape[0], p), -1, dtype=np.int64)
    seed_rows = np.flatnonzero(seed)
    seed_since[seed_rows] = state.since_us[seeds[order[seed_rows]]]
    start = np.where(seed[:, None], seed_since, start)
    # Forward-fill each run's start within the vehicle (every vehicle's first row has one).
    idx = np.where(start >= 0, np.arange(c.shape[0])[:, None], 0)
    idx = np.maximum.accumulate(idx, axis=0)
    run_start = np.take_along_axis(start, idx, axis=0)

    finite = np.isfinite(v)
    full = params.table(params.full_scale)
    step = params.table(params.max_step)
    with np.errstate(invalid="ignore"):
        at_limit = finite & (v >= full)
        near = (~first & (dt_s > 0) & (dt_s <= params.max_gap_s))[:, None]
        stepped = near & (np.abs(v - prev) > step * dt_s[:, None])
        flat = finite & ((ts[:, None] - run_start) >= params.flatline_s * 1e6)
    rules = {"range_limit": at_limit, "step": stepped, "flatline": flat}

    # Back to the readings (seed rows dropped).
    real = ~seed
    target = keep[order[real] - m]
    for name in reversed(FAULTS):
        hit = rules[name][real]
        channels[target] |= hit
        code[target[hit.any(axis=1)]] = name
    # The names of each reading's faulty channels, one join per distinct combination.
    bits = channels.astype(np.int64) @ (1 << np.arange(p, dtype=np.int64))
    combos, inverse = np.unique(bits, return_inverse=True)
    joined = np.array(
        [",".join(q for j, q in enumerate(POLLUTANTS) if int(b) >> j & 1) for b in combos],
        dtype=object,
    )
    pollutants = joined[inverse.reshape(-1)]

    # The new state: each vehicle's last row of the combined sequence, merged into the old.
    last = np.ones(c.shape[0], dtype=bool)
    last[:-1] = first[1:]
    fresh = FaultState(
        vehicle_id=all_vid[order][last],
        last_us=ts[last],
        last=v[last],
        since_us=run_start[last],
    )
    untouched = np.ones(len(state), dtype=bool)
    untouched[seeds] = False
    merged = FaultState(
        **{
            f.name: np.concatenate([getattr(state, f.name)[untouched], getattr(fresh, f.name)])
            for f in fields(FaultState)
        }
    )
    return Faults(code, channels, pollutants, merged)
