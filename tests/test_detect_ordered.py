"""The detector's pure parts with literal arrays: passes and faults re-derived tick by tick
from stored rows come out as on the whole ordered sequence; late rows form passes of their
own; a vehicle's analyser lag moves its values to where their air was sampled, whatever the
ticks; the partition hash and the even share of leases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import asyncpg
import numpy as np
import pytest

from telemetry.kinds.walkthrough.detection.faults import FaultParams, FaultState, sensor_faults
from telemetry.kinds.walkthrough.detection.ordered import (
    CONTEXT,
    IN_ORDER,
    LATE,
    NO_CURSOR,
    Cursors,
    OrderedParams,
    Plan,
    StoredRows,
    plan_detection,
)
from telemetry.kinds.walkthrough.detection.passes import find_passes
from telemetry.kinds.walkthrough.detection.tracker import PassStats
from telemetry.kinds.walkthrough.record import POLLUTANTS
from telemetry.store.leases import share
from telemetry.store.partitions import partition_of, partition_sql

S = 1_000_000
P = len(POLLUTANTS)
PARAMS = OrderedParams(
    max_gap_s=5,
    max_speed_kmh=1000,
    faults=FaultParams(flatline_s=3, full_scale={"pm25": 500.0}, max_step={}, max_gap_s=5),
)


class Store:
    """Stored rows and cursors, and the selection the detector's SQL makes from them."""

    def __init__(self, vehicle: list[str], ts_s: list[int], segment: list[int], pm25: list[float],
                 received_s: list[float], *,
                 lags: Mapping[str, Mapping[str, float]] | None = None) -> None:  # fmt: skip
        self.vehicle = np.array(vehicle, dtype=object)
        self.ts_us = np.array(ts_s, dtype=np.int64) * S
        self.segment = np.array(segment, dtype=np.int64)
        self.values = np.full((len(ts_s), P), np.nan)
        self.values[:, POLLUTANTS.index("pm25")] = pm25
        self.received_us = (np.array(received_s) * S).astype(np.int64)
        self.fault = np.zeros(len(ts_s), dtype=np.int64)
        self.bits = np.zeros(len(ts_s), dtype=np.int64)
        # Each vehicle's cursor: judged through, flat-line run starts, its open pass (or None).
        self.cursor: dict[str, tuple[int, list[int], PassStats | None]] = {}
        self.closed: list[tuple[str, int, int, int, int]] = []
        self.means: list[tuple[int, int, float]] = []  # (segment, first_us, NO2 mean) closed
        self.lags = lags or {}
        self.reads: Counter[int] = Counter()  # times each row was read (not as context)
        self.since_us = 0

    def lag_max_s(self, v: str) -> float:
        return max(self.lags.get(v, {}).values(), default=0.0)

    def waits(self, v: str, fresh: np.ndarray, quiet: set[str], final: bool) -> bool:
        """The repository's rule: a lagged vehicle with a cursor, not quiet, no late row in the
        window and new rows spanning less than twice its lag past the cursor is not read."""
        lag_us = self.lag_max_s(v) * S
        judged = self.cursor.get(v, (NO_CURSOR,))[0]
        mine = self.ts_us[(self.vehicle == v) & fresh]
        if lag_us == 0 or final or judged == NO_CURSOR or v in quiet or mine.shape[0] == 0:
            return False
        return bool(mine.min() > judged and mine.max() < judged + 2 * lag_us)

    def tick(self, horizon_s: float, *, final: bool = False) -> Plan:
        h = int(horizon_s * S)
        fresh = (self.received_us > self.since_us) & (self.received_us <= h)
        gap = 5 * S
        quiet = set()  # newest arrival (vehicles.last_received_at) in (since - gap, h - gap]
        for v in set(self.vehicle.tolist()):
            newest = self.received_us[self.vehicle == v].max()
            if newest > self.since_us - gap and (newest <= h - gap or final):
                quiet.add(v)
        ids = sorted(set(self.vehicle[fresh].tolist()) | quiet)
        ids = [v for v in ids if not self.waits(v, fresh, quiet, final)]
        parts: list[tuple[int, int, bool]] = []  # (row, role, fresh)
        for v in ids:
            mine = self.vehicle == v
            judged = self.cursor.get(v, (NO_CURSOR, [], -1))[0]
            for i in np.flatnonzero(
                mine & fresh & ((judged == NO_CURSOR) | (self.ts_us <= judged))
            ):
                parts.append((i, IN_ORDER if judged == NO_CURSOR else LATE, True))
            if judged != NO_CURSOR:
                after = mine & (self.ts_us > judged) & (self.received_us <= h)
                parts += [(i, IN_ORDER, bool(fresh[i])) for i in np.flatnonzero(after)]
                before = np.flatnonzero(mine & (self.ts_us <= judged))
                if before.shape[0]:
                    parts.append((before[np.argmax(self.ts_us[before])], CONTEXT, False))
        rows = np.array([p[0] for p in parts], dtype=np.intp)
        self.reads.update(int(i) for i, role, _ in parts if role != CONTEXT)
        no = np.array([ids.index(self.vehicle[i]) for i in rows.tolist()], dtype=np.int64)
        stored = StoredRows(
            vehicle=no,
            ts_us=self.ts_us[rows],
            received_us=self.received_us[rows],
            role=np.array([p[1] for p in parts], dtype=np.int64),
            fresh=np.array([p[2] for p in parts], dtype=bool),
            lat=np.full(rows.shape[0], 24.5),
            lon=np.full(rows.shape[0], 118.1),
            flag_ok=np.ones(rows.shape[0], dtype=bool),
            segment_id=self.segment[rows],
            values=self.values[rows].reshape(-1, P),
            fault=self.fault[rows],
            fault_bits=self.bits[rows],
        )
        opened = [self.cursor[v][2] if v in self.cursor else None for v in ids]
        open_row = np.cumsum([o is not None for o in opened]) - 1
        cursors = Cursors(
            vehicle_id=np.array(ids, dtype=object),
            judged_us=np.array([self.cursor.get(v, (NO_CURSOR,))[0] for v in ids], dtype=np.int64),
            flat_since_us=np.array(
                [self.cursor[v][1] if v in self.cursor else [-1] * P for v in ids], dtype=np.int64
            ).reshape(-1, P),
            open_row=np.where([o is not None for o in opened], open_row, -1).astype(np.int64),
            open=PassStats.concat([o for o in opened if o is not None]),
        )
        horizon = np.iinfo(np.int64).max // 2 if final else h
        lags = np.array(
            [[self.lags.get(v, {}).get(p, 0.0) for p in POLLUTANTS] for v in ids], dtype=np.float64
        ).reshape(-1, P)
        plan = plan_detection(stored, cursors, PARAMS, horizon_us=horizon, lags_s=lags)
        # What the repository writes back.
        target = rows[plan.fault_rows]
        code = {"": 0, "range_limit": 1, "step": 2, "flatline": 3}
        self.fault[target] = [code[c] for c in plan.fault_code.tolist()]
        self.bits[target] = [
            sum(1 << POLLUTANTS.index(q) for q in p.split(",") if q)
            for p in plan.fault_pollutants.tolist()
        ]
        for i, v in enumerate(ids):
            if plan.judged_us[i] != NO_CURSOR:
                row = int(plan.open_row[i])
                self.cursor[v] = (
                    int(plan.judged_us[i]),
                    plan.flat_since_us[i].tolist(),
                    plan.open.take(np.array([row])) if row >= 0 else None,
                )
        c = plan.closed
        self.closed += [
            (str(v), int(seg), int(f), int(last), int(n))
            for v, seg, f, last, n in zip(
                c.vehicle_id, c.segment_id, c.first_us, c.last_us, c.readings, strict=True
            )
        ]
        no2 = c.mean()[:, POLLUTANTS.index("no2")] if len(c) else np.empty(0)
        self.means += [
            (int(seg), int(f), float(m))
            for seg, f, m in zip(c.segment_id, c.first_us, no2, strict=True)
        ]
        self.since_us = h
        return plan


def _drives() -> Store:
    """Two vehicles at 1 Hz: a on segments 1, 1, 1, 2, 2, then a pause of 9 s, 2, 2;
    b on 7 × 4 then 8 × 2. Each reading arrives 0.3 s after it was measured."""
    a_ts = [0, 1, 2, 3, 4, 13, 14]
    b_ts = [0, 1, 2, 3, 4, 5]
    vehicle = ["a"] * len(a_ts) + ["b"] * len(b_ts)
    ts = a_ts + b_ts
    segment = [1, 1, 1, 2, 2, 2, 2, 7, 7, 7, 7, 8, 8]
    pm25 = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0] + [5.0] * 6
    return Store(vehicle, ts, segment, pm25, [t + 0.3 for t in ts])


def _whole(store: Store) -> list[tuple[str, int, int, int, int]]:
    found = find_passes(store.vehicle, store.ts_us, store.segment, max_gap_s=5)
    return sorted(
        (str(v), int(s), int(f), int(last), int(n))
        for v, s, f, last, n in zip(
            found.vehicle_id, found.segment_id, found.first_us, found.last_us, found.readings,
            strict=True,
        )
    )  # fmt: skip


@pytest.mark.parametrize(
    "horizons_s",
    [
        [100.0],  # everything at once
        [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 13.5, 14.5, 100.0],  # one reading a tick
        [2.0, 2.0, 4.31, 13.0, 100.0],  # uneven, and a tick with nothing new
    ],
)
def test_passes_re_derived_tick_by_tick_match_the_whole_ordered_sequence(
    horizons_s: list[float],
) -> None:
    store = _drives()
    for h in horizons_s:
        store.tick(h)

    assert sorted(store.closed) == _whole(store)
    assert all(o is None for _, _, o in store.cursor.values())  # nothing left open


def test_the_open_pass_stays_open_until_the_vehicle_moves_on_or_goes_quiet() -> None:
    store = _drives()

    plan = store.tick(2.5)  # a: 0, 1, 2 on segment 1; b: 0, 1, 2 on segment 7

    assert len(plan.closed) == 0
    assert len(plan.open) == 2
    judged, _, open_a = store.cursor["a"]
    assert judged == 2 * S  # every row read is consumed; the open pass is carried
    assert open_a is not None
    assert (open_a.first_us[0], open_a.readings[0], open_a.received_us[0]) == (0, 3, 2.3 * S)
    plan = store.tick(3.5)  # a reaches segment 2: its pass on segment 1 closes
    closed = zip(plan.closed.vehicle_id, plan.closed.readings, strict=True)
    assert [(str(v), int(n)) for v, n in closed] == [("a", 3)]
    # At 10 s, a has been quiet for more than the gap (its newest reading arrived at 4.3 s);
    # b moved on to segment 8 and its newest reading arrived at 5.3 s: that pass stays open.
    plan = store.tick(10.0)
    closed = zip(plan.closed.vehicle_id, plan.closed.segment_id, strict=True)
    assert sorted((str(v), int(s)) for v, s in closed) == [("a", 2), ("b", 7)]
    open_b = store.cursor["b"][2]
    assert open_b is not None and open_b.received_us[0] == int(5.3 * S)


def test_a_row_behind_the_cursor_is_a_late_pass_of_its_own() -> None:
    store = _drives()
    store.tick(100.0)
    closed = len(store.closed)
    # A reading measured at 2.5 s on segment 1 arrives long after the pass was judged.
    late = Store(["a"], [0], [1], [99.0], [200.0])
    store.vehicle = np.append(store.vehicle, "a")
    store.ts_us = np.append(store.ts_us, 2 * S + S // 2)
    store.segment = np.append(store.segment, 1)
    store.values = np.vstack([store.values, late.values])
    store.received_us = np.append(store.received_us, 200 * S)
    store.fault = np.append(store.fault, 0)
    store.bits = np.append(store.bits, 0)

    plan = store.tick(201.0)

    assert plan.late == 1
    assert store.closed[closed:] == [("a", 1, 2 * S + S // 2, 2 * S + S // 2, 1)]
    assert plan.fault_rows.shape[0] == 0  # late rows are not judged for faults


def test_faults_judged_tick_by_tick_match_one_judgement_of_the_whole_sequence() -> None:
    # pm25 flat at 30 for 5 s (flat line from 3 s on), then saturated, then normal again.
    ts = list(range(9))
    pm25 = [30.0, 30.0, 30.0, 30.0, 30.0, 30.0, 600.0, 41.0, 42.0]
    store = Store(["f"] * 9, ts, [1, 1, 2, 2, 3, 3, 4, 4, 5], pm25, [t + 0.2 for t in ts])
    values = store.values.copy()
    for h in (1.5, 2.5, 4.5, 6.5, 100.0):
        store.tick(h)

    whole = sensor_faults(store.vehicle, store.ts_us, values, FaultState.empty(), PARAMS.faults)
    code = {"": 0, "range_limit": 1, "step": 2, "flatline": 3}
    assert store.fault.tolist() == [code[c] for c in whole.code.tolist()]
    assert store.fault.tolist() == [0, 0, 0, 3, 3, 3, 1, 0, 0]


def test_a_faulty_channel_is_left_out_of_the_pass_mean() -> None:
    store = Store(["g"] * 3, [0, 1, 2], [1, 1, 1], [10.0, 600.0, 20.0], [0.1, 1.1, 2.1])

    plan = store.tick(100.0, final=True)

    assert plan.closed.readings.tolist() == [3]
    assert plan.closed.mean()[0, POLLUTANTS.index("pm25")] == 15.0
    assert plan.new_faults.tolist() == ["range_limit"]


def test_partitions_are_spread_and_stable() -> None:
    ids = [f"car-{i}" for i in range(1000)]

    parts = partition_of(ids, 64)

    assert parts.tolist()[:3] == partition_of(ids[:3], 64).tolist()
    assert np.bincount(parts, minlength=64).min() > 0
    assert partition_of(["wt-f", "car-1"], 64).tolist() == [37, 60]


async def test_partition_hash_in_sql_agrees_with_python(pool: asyncpg.Pool) -> None:
    ids = ["car-1", "wt-f", "x" * 64, "é-v", "share-03", ""]
    rows = await pool.fetch(
        f"SELECT {partition_sql('v', '$2')} AS p FROM unnest($1::text[]) WITH ORDINALITY"
        " AS t(v, i) ORDER BY i",
        ids,
        7,
    )
    assert [r["p"] for r in rows] == partition_of(ids, 7).tolist()


@pytest.mark.parametrize(
    ("partitions", "live", "expected"), [(64, 1, 64), (64, 2, 32), (64, 3, 22), (5, 8, 1)]
)
def test_share_spreads_the_partitions_evenly_over_live_workers(
    partitions: int, live: int, expected: int
) -> None:
    assert share(partitions, live) == expected


@pytest.mark.parametrize("horizons_s", [[100.0], [2.5, 10.0, 100.0], [2.5, 12.05, 100.0]])
def test_a_vehicle_that_went_quiet_closes_its_pass_however_the_ticks_fall(
    horizons_s: list[float],
) -> None:
    # Measured 1 s apart on one segment, but the last two arrive 10 s after the first three.
    store = Store(["q"] * 5, [0, 1, 2, 3, 4], [1] * 5, [10.0] * 5, [0.3, 1.3, 2.3, 12.0, 12.1])
    for h in horizons_s:
        store.tick(h)

    assert sorted(store.closed) == [("q", 1, 0, 2 * S, 3), ("q", 1, 3 * S, 4 * S, 2)]


# A drive at 1 Hz along segments 1..15, three readings on each; the plume is on segment 4
# (measured at 9..11 s), and the analyser reports NO2 12 s late, so on segment 8. The
# background varies 10, 11, 12 (a steady value would be a flat line): 11 on each segment.
DRIVE_S = 45
NO2_LAG_S = 12.0


def _lagged_drive(lag_s: float | None) -> Store:
    ts = list(range(DRIVE_S))
    sampled = np.arange(DRIVE_S) - NO2_LAG_S  # when the air reported at each row entered
    reported = np.where((sampled >= 9) & (sampled <= 11), 100.0, 10.0 + sampled % 3)
    store = Store(["L"] * DRIVE_S, ts, [1 + t // 3 for t in ts], [20.0] * DRIVE_S,
                  [t + 0.3 for t in ts],
                  lags=None if lag_s is None else {"L": {"no2": lag_s}})  # fmt: skip
    store.values[:, POLLUTANTS.index("no2")] = reported
    return store


def _no2_by_segment(store: Store) -> dict[int, float]:
    return {seg: m for seg, _, m in sorted(store.means, key=lambda x: x[1])}


ONE_A_TICK = [t + 0.5 for t in range(DRIVE_S)] + [100.0]


def test_without_the_lag_the_plume_lands_on_a_later_segment() -> None:
    store = _lagged_drive(None)
    store.tick(100.0)

    means = _no2_by_segment(store)
    assert max(means, key=lambda seg: means[seg]) == 8
    assert means[8] == 100.0


@pytest.mark.parametrize(
    ("horizons_s", "final"),
    [
        ([100.0], False),  # everything at once, the vehicle quiet
        ([100.0], True),  # the last worker stopping
        (ONE_A_TICK, False),  # one reading a tick
        ([0.2, 7.2, 7.2, 20.0, 33.3, 36.4, 44.35, 47.0, 100.0], False),  # uneven
        ([30.5, 44.5], True),  # stopping while rows are held back
    ],
)
def test_with_the_lag_the_plume_lands_on_its_segment_however_the_ticks_fall(
    horizons_s: list[float], final: bool
) -> None:
    store = _lagged_drive(NO2_LAG_S)
    for h in horizons_s[:-1]:
        store.tick(h)
    store.tick(horizons_s[-1], final=final)

    means = _no2_by_segment(store)
    # Each row keeps its segment; its NO2 is the value reported 12 s later. The last 12 s
    # have no later report: NO2 absent there, not a guess.
    expected = {seg: 100.0 if seg == 4 else 11.0 for seg in range(1, 12)}
    expected.update({seg: np.nan for seg in range(12, 16)})
    assert means.keys() == expected.keys()
    np.testing.assert_array_equal([means[k] for k in expected], list(expected.values()))
    assert sorted(store.closed)[:11] == [("L", k, 3 * (k - 1) * S, (3 * k - 1) * S, 3)
                                         for k in range(1, 12)]  # fmt: skip
    assert all(o is None for _, _, o in store.cursor.values())  # nothing left open


def test_a_lagged_vehicle_is_judged_its_lag_behind_its_newest_reading() -> None:
    store = _lagged_drive(NO2_LAG_S)

    plan = store.tick(20.5)  # readings 0..20 stored: 0..8 can be judged

    assert store.cursor["L"][0] == 8 * S  # the newer ones stay after the cursor
    assert store.means == [(1, 0, 11.0), (2, 3 * S, 11.0)]
    assert plan.open.segment_id.tolist() == [3]  # 6..8 s, continued by the held rows
    store.tick(31.5)  # 31 s: new rows span less than twice the lag past the cursor
    assert store.cursor["L"][0] == 8 * S
    assert store.reads[9] == 1
    store.tick(32.5)  # 32 s: read again, judged through 20 s
    assert store.cursor["L"][0] == 20 * S
    assert _no2_by_segment(store) == {1: 11.0, 2: 11.0, 3: 11.0, 4: 100.0, 5: 11.0, 6: 11.0}


def test_stopping_mid_drive_judges_the_held_rows_as_one_final_tick_would() -> None:
    ticked, once = _lagged_drive(NO2_LAG_S), _lagged_drive(NO2_LAG_S)
    for h in (10.5, 30.5):
        ticked.tick(h)
    ticked.tick(40.1, final=True)
    once.tick(40.1, final=True)

    assert sorted(ticked.closed) == sorted(once.closed)
    assert _no2_by_segment(ticked).keys() == _no2_by_segment(once).keys()
    np.testing.assert_array_equal(
        list(_no2_by_segment(ticked).values()), list(_no2_by_segment(once).values())
    )
    assert _no2_by_segment(ticked)[4] == 100.0


def test_a_lagged_vehicle_reads_each_row_about_twice_not_once_a_tick() -> None:
    store = _lagged_drive(NO2_LAG_S)
    for h in ONE_A_TICK:
        store.tick(h)

    reads = [store.reads[i] for i in range(DRIVE_S)]
    assert min(reads) == 1
    assert max(reads) == 2  # a tick a second, a 12 s lag: not 12 reads of the held rows


def test_without_a_lag_every_row_is_read_once() -> None:
    store = _lagged_drive(None)
    for h in ONE_A_TICK:
        store.tick(h)

    assert [store.reads[i] for i in range(DRIVE_S)] == [1] * DRIVE_S


@pytest.mark.parametrize("horizons_s", [[100.0], ONE_A_TICK, [5.5, 17.2, 29.9, 44.4, 100.0]])
def test_a_lagged_vehicles_faults_are_judged_on_the_reported_series_once(
    horizons_s: list[float],
) -> None:
    store = _lagged_drive(NO2_LAG_S)
    no2 = POLLUTANTS.index("no2")
    store.values[:, POLLUTANTS.index("pm25")] = 20.0 + np.arange(DRIVE_S) % 2
    store.values[30:36, no2] = 55.0  # stuck from 30 s: a flat line from 33 s on
    store.values[40, POLLUTANTS.index("pm25")] = 600.0  # saturated
    values = store.values.copy()
    for h in horizons_s:
        store.tick(h)

    whole = sensor_faults(store.vehicle, store.ts_us, values, FaultState.empty(), PARAMS.faults)
    code = {"": 0, "range_limit": 1, "step": 2, "flatline": 3}
    assert store.fault.tolist() == [code[c] for c in whole.code.tolist()]
    assert np.flatnonzero(store.fault).tolist() == [33, 34, 35, 40]
    means = _no2_by_segment(store)
    assert means[4] == 100.0
