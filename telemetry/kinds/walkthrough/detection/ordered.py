"""Drive passes and sensor faults judged from committed rows in (vehicle, time) order.

The detector of docs/adr/0011 reads, each tick, every vehicle's stored rows after its cursor
(the measurement time of the newest row it has consumed) that arrived before the horizon, the
cursor's own row as context (the predecessor of the speed-jump and step rules), and the rows
that arrived since the last tick behind the cursor (late data). With the state stored at the
cursor (the open pass's running statistics, the flat-line run starts), :func:`plan_detection`
does what the tracker does on the whole ordered sequence:

- a pass closes when its vehicle moves to another segment or pauses past the gap (measurement
  time), and when the vehicle went quiet: the next usable reading arrived more than the gap
  after the pass's newest one, or none has arrived by the horizon that long after it. Both are
  properties of the stored rows, so the result does not depend on how ticks fall;
- the sensor faults of the new rows, seeded with the fault state at the cursor;
- late rows form passes of their own, closed at once and not judged for faults, as the
  tracker treats them.

Each reading is read once in order (the open pass is carried in the cursor row, not read
again), and nothing survives in memory between ticks; everything here is pure.

A vehicle with a registered analyser lag (docs/domain.md §5.8) is judged on retimed values:
each row keeps its position and segment, and its pollutant values become those of the air
sampled there, reported up to ``L_max`` (its largest lag) later. So its judging is **held
back**: only its rows up to (its newest row read − ``L_max``) are judged; the newer ones stay
after the cursor, untouched (no pass, no fault, no state), and are read again by a later
tick. A vehicle that went quiet (its newest row arrived at least the gap before the horizon)
or a final tick judges every row, the values not known yet being absent. Values are retimed
within a run of rows that arrived without a pause longer than the gap, the same run whatever
the ticks, and from the raw series with its faulty channels left out; the fault rules
themselves judge the raw reported series. Late rows are retimed among themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

from telemetry.columns import Columns, FloatArray, IntArray, ObjectArray
from telemetry.kinds.walkthrough.detection.faults import (
    FAULTS,
    FaultParams,
    FaultState,
    sensor_faults,
)
from telemetry.kinds.walkthrough.detection.lag import retime_vehicles
from telemetry.kinds.walkthrough.detection.quality import quality_mask
from telemetry.kinds.walkthrough.detection.tracker import PassStats, advance, fragments
from telemetry.kinds.walkthrough.record import POLLUTANTS, WalkthroughBatch

__all__ = [
    "CONTEXT",
    "IN_ORDER",
    "LATE",
    "NO_CURSOR",
    "OTHER_FAULT",
    "Cursors",
    "OrderedParams",
    "Plan",
    "StoredRows",
    "plan_detection",
]

BoolArray = npt.NDArray[np.bool_]

#: The role of a row read back: after the cursor, behind it (late), or the context row.
IN_ORDER, LATE, CONTEXT = 0, 1, 2
#: ``judged_us`` of a vehicle without a cursor row yet.
NO_CURSOR = np.iinfo(np.int64).min
#: Stored ``fault`` code of a row marked by something else than these rules (a calibration):
#: its marks are kept and its channels left out, but the rules never rewrite it.
OTHER_FAULT = -1
_BITS = 1 << np.arange(len(POLLUTANTS), dtype=np.int64)
#: Fragments are split where a vehicle went quiet by adding an epoch above the segment id.
_EPOCH_SHIFT = 40


@dataclass(frozen=True, slots=True, eq=False)
class StoredRows(Columns):
    """Rows read back for one tick. ``vehicle`` indexes :attr:`Cursors.vehicle_id`; ``fault``
    is the stored code (0: none, ``k``: ``FAULTS[k - 1]``, :data:`OTHER_FAULT`: another mark)
    and ``fault_bits`` its channels, bit ``j`` for ``POLLUTANTS[j]``."""

    vehicle: IntArray
    ts_us: IntArray
    received_us: IntArray
    role: IntArray
    fresh: BoolArray  # arrived since the partition's last tick
    lat: FloatArray
    lon: FloatArray
    flag_ok: BoolArray
    segment_id: IntArray  # -1: not snapped
    values: FloatArray  # (rows, pollutants)
    fault: IntArray
    fault_bits: IntArray


@dataclass(frozen=True, slots=True)
class Cursors:
    """The tick's vehicles (sorted), each with its cursor (:data:`NO_CURSOR`: none), the
    flat-line run starts at the cursor (-1: unknown) and its open pass, if any (``open_row``
    indexes ``open``, -1: none)."""

    vehicle_id: ObjectArray
    judged_us: IntArray
    flat_since_us: IntArray  # (vehicles, pollutants)
    open_row: IntArray
    open: PassStats


@dataclass(frozen=True, slots=True)
class OrderedParams:
    """``lag_max_gap_s``: retiming never interpolates between readings further apart."""

    max_gap_s: float
    max_speed_kmh: float
    faults: FaultParams
    lag_max_gap_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Plan:
    """What one tick decides. ``fault_rows`` index the rows whose stored fault changes to
    ``fault_code`` / ``fault_pollutants`` (``''``: none); ``new_faults`` are the codes of
    rows that had none; the cursor columns are per vehicle (``open_row`` indexes ``open``,
    -1: no pass open; ``judged_us`` :data:`NO_CURSOR`: no cursor to write)."""

    closed: PassStats
    fault_rows: npt.NDArray[np.intp]
    fault_code: ObjectArray
    fault_pollutants: ObjectArray
    new_faults: ObjectArray
    judged_us: IntArray
    flat_since_us: IntArray
    open_row: IntArray
    open: PassStats
    late: int
    skipped: ObjectArray


def plan_detection(
    rows: StoredRows,
    cursors: Cursors,
    params: OrderedParams,
    *,
    horizon_us: int,
    lags_s: FloatArray | None = None,
) -> Plan:
    """Judge one tick's rows (any order) against the vehicles' cursors; see the module
    docstring. ``horizon_us``: every row that arrived before it is among ``rows`` (a huge
    value closes every open pass: the last worker is stopping). ``lags_s``: the vehicles'
    analyser lags (vehicles × pollutants, seconds, 0: none; None: no vehicle has one)."""
    nv = cursors.vehicle_id.shape[0]
    gap_us = round(params.max_gap_s * 1e6)
    lags = np.zeros((nv, len(POLLUTANTS))) if lags_s is None else np.asarray(lags_s, np.float64)
    seq = np.flatnonzero(rows.role != LATE)
    seq = seq[np.lexsort((rows.ts_us[seq], rows.vehicle[seq]))]
    s = rows.take(seq)
    context = s.role == CONTEXT
    held = _held_back(s, context, lags, horizon_us=horizon_us, gap_us=gap_us)
    now = ~context & ~held  # the rows judged by this tick
    pending = np.zeros(nv, dtype=bool)
    pending[s.vehicle[held]] = True
    vid = cursors.vehicle_id[s.vehicle]
    usable, why = quality_mask(
        _batch(s, vid, s.values), s.segment_id, max_speed_kmh=params.max_speed_kmh
    )
    usable &= now

    # Faults of the new rows, from the state at the cursor (the context rows); the held rows'
    # faults only to leave their faulty channels out of the retiming (not stored, the state
    # after them thrown away: they are judged when their turn comes).
    judged = np.flatnonzero(now)
    seed = _seed(s, vid, context, cursors)
    faults = sensor_faults(vid[judged], s.ts_us[judged], s.values[judged], seed, params.faults)
    bits = np.zeros(len(s), dtype=np.int64)
    bits[judged] = faults.channels.astype(np.int64) @ _BITS
    ahead = np.flatnonzero(held)
    if ahead.shape[0]:
        later = sensor_faults(
            vid[ahead], s.ts_us[ahead], s.values[ahead], faults.state, params.faults
        )
        bits[ahead] = later.channels.astype(np.int64) @ _BITS
    excluded = ((bits | s.fault_bits)[:, None] & _BITS) != 0
    # A flagged reading (not N) is no sample either, as in the street map.
    sample = excluded | ~s.flag_ok[:, None]
    sound = _retimed(s, np.where(sample, np.nan, s.values), lags, gap_us, params)

    # Fragments of the new usable rows, split where the vehicle went quiet (arrival gap).
    keep = np.flatnonzero(usable)
    k = s.take(keep)
    brk = np.zeros(keep.shape[0], dtype=bool)
    brk[1:] = (k.vehicle[1:] == k.vehicle[:-1]) & (np.diff(k.received_us) > gap_us)
    first_of_vehicle = np.ones(keep.shape[0], dtype=bool)
    first_of_vehicle[1:] = k.vehicle[1:] != k.vehicle[:-1]
    epoch = np.cumsum(brk) - np.maximum.accumulate(np.where(first_of_vehicle, np.cumsum(brk), 0))
    frags = fragments(
        _batch(k, vid[keep], sound[keep]),
        k.segment_id + (epoch.astype(np.int64) << _EPOCH_SHIFT),
        np.ones(keep.shape[0], dtype=bool),
        max_gap_s=params.max_gap_s,
    )
    frags = replace(frags, segment_id=frags.segment_id & ((1 << _EPOCH_SHIFT) - 1))

    # An open pass whose vehicle's next usable reading arrived past the gap is closed first.
    has_open = cursors.open_row >= 0
    open_vehicle = np.flatnonzero(has_open)
    open_passes = cursors.open.take(cursors.open_row[open_vehicle])
    none = np.iinfo(np.int64).max
    next_arrival = np.full(nv, none, dtype=np.int64)
    firsts = np.flatnonzero(first_of_vehicle)
    next_arrival[k.vehicle[firsts]] = k.received_us[firsts]
    # A vehicle with rows held back is not quiet: whether those rows continue its pass is
    # decided when they are judged.
    following = next_arrival[open_vehicle]
    quiet = np.where(
        following < none,
        following - open_passes.received_us > gap_us,
        ~pending[open_vehicle] & (horizon_us - open_passes.received_us > gap_us),
    )
    closed_quiet = open_passes.take(quiet)
    # Arrival clock 0: nothing closes inside; the quiet ones close just below.
    closed, still_open = advance(
        open_passes.take(~quiet), frags, now_us=0, max_gap_s=params.max_gap_s
    )
    # A pass left open closes too when nothing followed it within the gap.
    waiting = pending[_vehicle_index(cursors.vehicle_id, still_open.vehicle_id)]
    stale = ~waiting & (horizon_us - still_open.received_us > gap_us)
    closed = PassStats.concat([closed_quiet, closed, still_open.take(stale)])
    still_open = still_open.take(~stale)

    judged_us = cursors.judged_us.copy()
    np.maximum.at(judged_us, s.vehicle[judged], s.ts_us[judged])
    # A vehicle seen for the first time with every row held back gets a cursor just before
    # them, so that the next tick reads them again.
    first_held = np.full(nv, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_held, s.vehicle[held], s.ts_us[held])
    unseen = pending & (judged_us == NO_CURSOR)
    judged_us[unseen] = first_held[unseen] - 1
    open_row = np.full(nv, -1, dtype=np.int64)
    open_row[_vehicle_index(cursors.vehicle_id, still_open.vehicle_id)] = np.arange(len(still_open))
    flat_since = cursors.flat_since_us.copy()
    if judged.shape[0]:
        state = faults.state
        rows_of = _vehicle_index(cursors.vehicle_id, state.vehicle_id)
        flat_since[rows_of] = state.since_us

    # Stored faults that change (marks of other origin are left alone).
    code_index = np.zeros(len(s), dtype=np.int64)
    names = np.array(["", *FAULTS], dtype=object)
    for code, name in enumerate(FAULTS, start=1):
        code_index[judged[faults.code == name]] = code
    ours = now & (s.fault != OTHER_FAULT)
    changed = ours & ((code_index != s.fault) | (bits != np.where(s.fault > 0, s.fault_bits, 0)))
    at = np.flatnonzero(changed)
    pollutants = np.full(len(s), "", dtype=object)
    pollutants[judged] = faults.pollutants
    new = at[(s.fault[at] == 0) & (code_index[at] > 0)]

    # Late rows: passes of their own, closed at once, their stored marks respected.
    behind = np.flatnonzero(rows.role == LATE)
    late = rows.take(behind[np.lexsort((rows.ts_us[behind], rows.vehicle[behind]))])
    late_closed, late_why = _late_passes(late, cursors.vehicle_id, lags, params)

    # Why rows were left out, counted once per row: on arrival, or (lagged) when judged.
    lagged = lags.max(axis=1, initial=0.0) > 0
    fresh_why = why[now & ~usable & (s.fresh | lagged[s.vehicle])]
    return Plan(
        closed=PassStats.concat([closed, late_closed]),
        fault_rows=seq[at],
        fault_code=names[code_index[at]],
        fault_pollutants=pollutants[at],
        new_faults=names[code_index[new]],
        judged_us=judged_us,
        flat_since_us=flat_since,
        open_row=open_row,
        open=still_open,
        late=int(late.fresh.sum()),
        skipped=np.concatenate([fresh_why, late_why]).astype(object),
    )


def _late_passes(
    late: StoredRows, vehicle_ids: ObjectArray, lags: FloatArray, params: OrderedParams
) -> tuple[PassStats, ObjectArray]:
    """Late rows (in (vehicle, ts) order) as passes closed at once, retimed among themselves
    (the rows around them were judged already)."""
    if len(late) == 0:
        return PassStats.empty(), np.empty(0, dtype=object)
    vid = vehicle_ids[late.vehicle]
    excluded = (late.fault_bits[:, None] & _BITS) != 0
    gap_us = round(params.max_gap_s * 1e6)
    values = _retimed(late, np.where(excluded, np.nan, late.values), lags, gap_us, params)
    batch = _batch(late, vid, values)
    usable, why = quality_mask(batch, late.segment_id, max_speed_kmh=params.max_speed_kmh)
    found = fragments(batch, late.segment_id, usable, max_gap_s=params.max_gap_s)
    return found, why[late.fresh & ~usable]


def _held_back(
    s: StoredRows, context: BoolArray, lags: FloatArray, *, horizon_us: int, gap_us: int
) -> BoolArray:
    """The rows (in (vehicle, ts) order) a lagged vehicle cannot judge yet: those newer than
    its newest row read minus its largest lag, unless it went quiet (its newest row arrived
    at least the gap before the horizon; a final tick's huge horizon makes every vehicle
    quiet)."""
    nv = lags.shape[0]
    lag_max_us = np.round(lags.max(axis=1, initial=0.0) * 1e6).astype(np.int64)
    if not bool((lag_max_us > 0).any()):
        return np.zeros(len(s), dtype=bool)
    newer = ~context
    newest_ts = np.zeros(nv, dtype=np.int64)
    newest_rx = np.zeros(nv, dtype=np.int64)
    np.maximum.at(newest_ts, s.vehicle[newer], s.ts_us[newer])
    np.maximum.at(newest_rx, s.vehicle[newer], s.received_us[newer])
    waits = (lag_max_us > 0) & (horizon_us - newest_rx < gap_us)
    cutoff = np.where(waits, newest_ts - lag_max_us, np.iinfo(np.int64).max)
    return newer & (s.ts_us > cutoff[s.vehicle])


def _retimed(
    s: StoredRows, values: FloatArray, lags: FloatArray, gap_us: int, params: OrderedParams
) -> FloatArray:
    """``values`` of the rows (in (vehicle, ts) order) of lagged vehicles replaced by those of
    the air sampled at each row (:func:`~.lag.retime`), within runs of rows that arrived
    without a pause longer than the gap; channels without a lag keep their own value."""
    at = np.flatnonzero(lags.max(axis=1, initial=0.0)[s.vehicle] > 0)
    if at.shape[0] == 0:
        return values
    vehicle = s.vehicle[at]
    run = np.ones(at.shape[0], dtype=bool)
    run[1:] = (vehicle[1:] != vehicle[:-1]) | (np.diff(s.received_us[at]) > gap_us)
    run_lags = lags[vehicle[run]]
    moved = retime_vehicles(
        np.cumsum(run) - 1, s.ts_us[at], values[at], run_lags, max_gap_s=params.lag_max_gap_s
    )
    out = values.copy()
    out[at] = np.where(lags[vehicle] > 0, moved, values[at])
    return out


def _seed(s: StoredRows, vid: ObjectArray, context: BoolArray, cursors: Cursors) -> FaultState:
    """The fault state at each vehicle's cursor: its context row's time and values, and the
    stored run starts (the context row's time where none is known)."""
    at = np.flatnonzero(context)
    # One context row per vehicle: the newest (rows are in (vehicle, ts) order).
    if at.shape[0]:
        last = np.ones(at.shape[0], dtype=bool)
        last[:-1] = s.vehicle[at][1:] != s.vehicle[at][:-1]
        at = at[last]
    since = cursors.flat_since_us[s.vehicle[at]]
    since = np.where(since >= 0, since, s.ts_us[at][:, None])
    return FaultState(
        vehicle_id=vid[at].astype(str),
        last_us=s.ts_us[at],
        last=s.values[at],
        since_us=since.astype(np.int64),
    )


def _vehicle_index(sorted_ids: ObjectArray, ids: npt.NDArray[np.generic]) -> IntArray:
    """Positions of ``ids`` in the sorted vehicle list (every id is in it)."""
    if ids.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    return np.searchsorted(sorted_ids.astype(str), ids.astype(str)).astype(np.int64)


def _batch(rows: StoredRows, vehicle_id: ObjectArray, values: FloatArray) -> WalkthroughBatch:
    """The columns detection reads, as a batch (the others absent)."""
    n = len(rows)
    columns: dict[str, object] = {}
    for f in fields(WalkthroughBatch):
        if f.name in ("extra", "units", "calibration"):
            columns[f.name] = np.full(n, None, dtype=object)
        elif f.name not in ("vehicle_id", "ts_us", "received_us", "flag"):
            columns[f.name] = np.full(n, np.nan)
    for j, p in enumerate(POLLUTANTS):
        columns[p] = values[:, j]
    columns.update(
        vehicle_id=np.asarray(vehicle_id, dtype=object),
        ts_us=rows.ts_us,
        received_us=rows.received_us,
        lat=rows.lat,
        lon=rows.lon,
        flag=np.where(rows.flag_ok, "N", "X").astype("<U1"),
    )
    return WalkthroughBatch(**columns)  # type: ignore[arg-type]
