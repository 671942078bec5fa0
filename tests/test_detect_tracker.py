"""Drive passes assembled across micro-batches, with literal arrays."""

from __future__ import annotations

import numpy as np

from telemetry.kinds.walkthrough.detection.tracker import PassStats, advance
from telemetry.kinds.walkthrough.record import POLLUTANTS

S = 1_000_000  # one second in µs
GAP_S = 10.0
PM25 = POLLUTANTS.index("pm25")


def frag(
    vehicle: list[str],
    segment: list[int],
    first_s: list[int],
    last_s: list[int],
    pm25: list[list[float]],
    received_s: list[int] | None = None,
) -> PassStats:
    """Fragments with the given PM2.5 readings (other pollutants absent)."""
    k, p = len(vehicle), len(POLLUTANTS)
    n, total, peak = np.zeros((k, p)), np.zeros((k, p)), np.full((k, p), np.nan)
    for i, values in enumerate(pm25):
        n[i, PM25], total[i, PM25], peak[i, PM25] = len(values), sum(values), max(values)
    return PassStats(
        vehicle_id=np.array(vehicle),
        segment_id=np.array(segment, dtype=np.int64),
        first_us=np.array(first_s, dtype=np.int64) * S,
        last_us=np.array(last_s, dtype=np.int64) * S,
        received_us=np.array(received_s or last_s, dtype=np.int64) * S,
        readings=np.array([len(v) for v in pm25], dtype=np.int64),
        n=n,
        total=total,
        peak=peak,
    )


def test_one_reading_per_batch_builds_one_pass_until_the_segment_changes() -> None:
    open_ = PassStats.empty()
    for t, value in enumerate([50.0, 70.0, 90.0]):
        closed, open_ = advance(
            open_, frag(["car"], [7], [t], [t], [[value]]), now_us=t * S, max_gap_s=GAP_S
        )
        assert len(closed) == 0
    assert len(open_) == 1
    assert open_.readings.tolist() == [3]
    closed, open_ = advance(
        open_, frag(["car"], [8], [3], [3], [[20.0]]), now_us=3 * S, max_gap_s=GAP_S
    )
    assert closed.segment_id.tolist() == [7]
    assert closed.first_us.tolist() == [0]
    assert closed.last_us.tolist() == [2 * S]
    assert closed.mean()[0, PM25] == 70.0
    assert closed.peak[0, PM25] == 90.0
    assert open_.segment_id.tolist() == [8]


def test_a_gap_longer_than_the_limit_splits_the_pass() -> None:
    _, open_ = advance(
        PassStats.empty(), frag(["car"], [7], [0], [1], [[40, 42]]), now_us=S, max_gap_s=GAP_S
    )
    closed, open_ = advance(
        open_, frag(["car"], [7], [30], [30], [[45]]), now_us=30 * S, max_gap_s=GAP_S
    )
    assert closed.readings.tolist() == [2]
    assert open_.first_us.tolist() == [30 * S]
    assert open_.readings.tolist() == [1]


def test_vehicles_are_tracked_independently_and_quiet_ones_close() -> None:
    first = frag(["a", "b"], [1, 2], [0, 0], [0, 0], [[10], [20]])
    _, open_ = advance(PassStats.empty(), first, now_us=0, max_gap_s=GAP_S)
    # Only "a" reports again; "b" stays open until it has been quiet for longer than the gap.
    closed, open_ = advance(open_, frag(["a"], [1], [1], [1], [[12]]), now_us=S, max_gap_s=GAP_S)
    assert len(closed) == 0
    assert sorted(open_.vehicle_id.tolist()) == ["a", "b"]
    closed, open_ = advance(open_, PassStats.empty(), now_us=11 * S, max_gap_s=GAP_S)
    assert closed.vehicle_id.tolist() == ["b"]
    assert open_.vehicle_id.tolist() == ["a"]
    closed, open_ = advance(open_, PassStats.empty(), now_us=12 * S, max_gap_s=GAP_S)
    assert closed.vehicle_id.tolist() == ["a"]
    assert closed.readings.tolist() == [2]
    assert len(open_) == 0


def test_several_fragments_of_one_vehicle_in_one_batch() -> None:
    _, open_ = advance(
        PassStats.empty(), frag(["car"], [1], [0], [1], [[10, 10]]), now_us=S, max_gap_s=GAP_S
    )
    batch = frag(["car", "car", "car"], [1, 2, 3], [2, 4, 6], [3, 5, 7], [[30, 30], [5, 5], [8, 8]])
    closed, open_ = advance(open_, batch, now_us=7 * S, max_gap_s=GAP_S)
    # Segment 1 continued (4 readings, mean 20), segment 2 complete, segment 3 still open.
    assert closed.segment_id.tolist() == [1, 2]
    assert closed.readings.tolist() == [4, 2]
    assert closed.mean()[:, PM25].tolist() == [20.0, 5.0]
    assert open_.segment_id.tolist() == [3]


def test_late_readings_form_their_own_pass_and_leave_the_open_one_alone() -> None:
    _, open_ = advance(
        PassStats.empty(),
        frag(["car"], [5], [100], [101], [[30, 30]]),
        now_us=101 * S,
        max_gap_s=GAP_S,
    )
    late = frag(["car"], [5], [40], [42], [[200, 200, 200]], received_s=[102])
    closed, open_ = advance(open_, late, now_us=102 * S, max_gap_s=GAP_S)
    assert closed.first_us.tolist() == [40 * S]
    assert closed.readings.tolist() == [3]
    assert open_.first_us.tolist() == [100 * S]
    assert open_.readings.tolist() == [2]


def test_a_burst_after_a_coverage_gap_extends_the_pass_it_continues() -> None:
    # Received late (a buffered burst) but in measurement order after the open pass.
    _, open_ = advance(
        PassStats.empty(), frag(["car"], [5], [0], [0], [[50]]), now_us=0, max_gap_s=GAP_S
    )
    burst = frag(
        ["car", "car"], [5, 6], [1, 4], [3, 9], [[52, 54, 56], [10] * 6], received_s=[60, 60]
    )
    closed, open_ = advance(open_, burst, now_us=60 * S, max_gap_s=GAP_S)
    assert closed.segment_id.tolist() == [5]
    assert closed.readings.tolist() == [4]
    assert open_.segment_id.tolist() == [6]
