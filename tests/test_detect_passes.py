import numpy as np

from telemetry.kinds.walkthrough.detection.passes import find_passes

S = 1_000_000
T0 = 1_780_000_000 * S


def passes_of(vehicle, ts_s, segment, max_gap_s=10.0):
    return find_passes(
        np.array(vehicle, dtype=object),
        T0 + np.array(ts_s, dtype=np.int64) * S,
        np.array(segment, dtype=np.int64),
        max_gap_s=max_gap_s,
    )


def test_gap_longer_than_limit_splits_a_pass():
    p = passes_of(["v"] * 5, [0, 1, 2, 20, 21], [4] * 5)
    assert len(p) == 2
    assert p.readings.tolist() == [3, 2]
    assert (p.first_us - T0).tolist() == [0, 20 * S]
    assert (p.last_us - T0).tolist() == [2 * S, 21 * S]
    assert p.segment_id.tolist() == [4, 4]


def test_gap_equal_to_limit_does_not_split():
    p = passes_of(["v"] * 2, [0, 10], [4, 4])
    assert p.readings.tolist() == [2]


def test_segment_change_splits_a_pass():
    p = passes_of(["v"] * 5, [0, 1, 2, 3, 4], [4, 4, 5, 5, 4])
    assert p.segment_id.tolist() == [4, 5, 4]
    assert p.readings.tolist() == [2, 2, 1]


def test_each_vehicle_has_its_own_passes_on_a_shared_segment():
    p = passes_of(["a", "b", "a", "b"], [0, 0, 1, 1], [4, 4, 4, 4])
    assert p.vehicle_id.tolist() == ["a", "b"]
    assert p.readings.tolist() == [2, 2]


def test_out_of_order_input_is_sorted_by_vehicle_and_time():
    p = passes_of(["v", "v", "v", "v"], [3, 0, 2, 1], [5, 4, 5, 4])
    assert p.segment_id.tolist() == [4, 5]
    assert (p.first_us - T0).tolist() == [0, 2 * S]
    assert (p.last_us - T0).tolist() == [S, 3 * S]
    # order maps sorted positions back to input positions.
    assert p.order.tolist() == [1, 3, 2, 0]
    assert p.starts.tolist() == [0, 2]


def test_stats_ignore_nan_and_give_nan_for_a_pass_without_values():
    p = passes_of(["v"] * 5, [3, 0, 2, 1, 30], [5, 4, 5, 4, 4])
    values = np.array([30.0, 10.0, np.nan, 20.0, np.nan])
    n, mean, peak = p.stats(values)
    assert n.tolist() == [2.0, 1.0, 0.0]
    assert mean[:2].tolist() == [15.0, 30.0]
    assert peak[:2].tolist() == [20.0, 30.0]
    assert np.isnan(mean[2])
    assert np.isnan(peak[2])


def test_no_readings_give_no_passes():
    p = passes_of([], [], [])
    assert len(p) == 0
    n, mean, peak = p.stats(np.empty(0))
    assert n.shape == mean.shape == peak.shape == (0,)


def test_duplicate_times_stay_in_one_pass():
    p = passes_of(["v"] * 3, [0, 0, 1], [4, 4, 4], max_gap_s=1.0)
    assert p.readings.tolist() == [3]


def test_sub_second_gap_limit_splits_second_steps():
    p = passes_of(["v"] * 3, [0, 0, 1], [4, 4, 4], max_gap_s=0.5)
    assert p.readings.tolist() == [2, 1]
