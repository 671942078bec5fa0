import numpy as np
import pytest

from telemetry.geo import haversine_m
from telemetry.kinds.walkthrough.detection.quality import quality_mask
from telemetry.kinds.walkthrough.record import WalkthroughBatch

S = 1_000_000  # one second in µs
T0 = 1_780_000_000 * S
# One second of latitude travel at ~40 km/h (11.1 m) and a jump of ~1.1 km.
STEP_DEG = 0.0001
JUMP_DEG = 0.01


def make_batch(vehicle_id, ts_us, lat, lon=None, flag=None) -> WalkthroughBatch:
    n = len(ts_us)
    empty = WalkthroughBatch.empty()
    columns = {name: np.full(n, np.nan) for name in empty.__dataclass_fields__}
    columns.update(
        vehicle_id=np.array(vehicle_id, dtype=object),
        ts_us=np.array(ts_us, dtype=np.int64),
        received_us=np.array(ts_us, dtype=np.int64),
        lat=np.array(lat, dtype=np.float64),
        lon=np.full(n, 118.1) if lon is None else np.array(lon, dtype=np.float64),
        flag=np.array(flag or ["N"] * n, dtype="<U1"),
        extra=np.full(n, None, dtype=object),
        units=np.full(n, None, dtype=object),
    )
    return WalkthroughBatch(**columns)


def test_haversine_one_degree_of_latitude_is_about_111_km():
    d = haversine_m(np.array([24.0]), np.array([118.0]), np.array([25.0]), np.array([118.0]))
    assert d[0] == pytest.approx(111_195, rel=1e-3)


def test_clean_track_is_all_usable():
    batch = make_batch(
        ["v1"] * 3, [T0, T0 + S, T0 + 2 * S], [24.5, 24.5 + STEP_DEG, 24.5 + 2 * STEP_DEG]
    )
    usable, reason = quality_mask(batch, np.array([7, 7, 8]), max_speed_kmh=200)
    assert usable.tolist() == [True, True, True]
    assert reason.tolist() == ["", "", ""]


def test_flag_other_than_normal_is_unusable():
    batch = make_batch(["v1"] * 3, [T0, T0 + S, T0 + 2 * S], [24.5] * 3, flag=["N", "D", "C"])
    usable, reason = quality_mask(batch, np.array([1, 1, 1]), max_speed_kmh=200)
    assert usable.tolist() == [True, False, False]
    assert reason.tolist() == ["", "flag", "flag"]


def test_unsnapped_reading_is_unusable():
    batch = make_batch(["v1"] * 2, [T0, T0 + S], [24.5, 24.5])
    usable, reason = quality_mask(batch, np.array([3, -1]), max_speed_kmh=200)
    assert usable.tolist() == [True, False]
    assert reason.tolist() == ["", "unsnapped"]


def test_gps_jump_marks_the_outlier_and_the_return():
    lat = [24.5, 24.5 + STEP_DEG, 24.5 + JUMP_DEG, 24.5 + 3 * STEP_DEG]
    batch = make_batch(["v1"] * 4, [T0 + i * S for i in range(4)], lat)
    usable, reason = quality_mask(batch, np.array([1, 1, 1, 1]), max_speed_kmh=200)
    assert reason.tolist() == ["", "", "speed_jump", "speed_jump"]
    assert usable.tolist() == [True, True, False, False]


def test_speed_is_measured_in_time_order_not_arrival_order():
    # Arrival order is scrambled; sorted by time the track is smooth.
    ts = [T0 + 2 * S, T0, T0 + S]
    lat = [24.5 + 2 * STEP_DEG, 24.5, 24.5 + STEP_DEG]
    batch = make_batch(["v1"] * 3, ts, lat)
    usable, _ = quality_mask(batch, np.array([1, 1, 1]), max_speed_kmh=200)
    assert usable.all()


def test_a_far_apart_vehicle_is_not_a_speed_jump():
    batch = make_batch(["v1", "v2", "v1", "v2"], [T0, T0, T0 + S, T0 + S], [24.5, 30.0, 24.5, 30.0])
    usable, _ = quality_mask(batch, np.array([1, 2, 1, 2]), max_speed_kmh=200)
    assert usable.all()


def test_slow_long_gap_is_not_a_speed_jump():
    # 1.1 km in 60 s is 67 km/h.
    batch = make_batch(["v1"] * 2, [T0, T0 + 60 * S], [24.5, 24.5 + JUMP_DEG])
    usable, _ = quality_mask(batch, np.array([1, 1]), max_speed_kmh=200)
    assert usable.all()


def test_repeated_vehicle_and_time_keeps_the_first_arrival():
    batch = make_batch(["v1", "v1", "v2", "v1"], [T0, T0 + S, T0 + S, T0 + S], [24.5] * 4)
    usable, reason = quality_mask(batch, np.array([1, 1, 1, 1]), max_speed_kmh=200)
    assert reason.tolist() == ["", "", "", "duplicate_ts"]
    assert usable.tolist() == [True, True, True, False]


def test_duplicate_far_away_is_a_duplicate_not_a_jump_and_does_not_break_the_track():
    lat = [24.5, 24.5 + JUMP_DEG, 24.5 + STEP_DEG]
    batch = make_batch(["v1"] * 3, [T0, T0, T0 + S], lat)
    _, reason = quality_mask(batch, np.array([1, 1, 1]), max_speed_kmh=200)
    assert reason.tolist() == ["", "duplicate_ts", ""]


def test_flag_takes_precedence_over_unsnapped():
    batch = make_batch(["v1"], [T0], [24.5], flag=["M"])
    _, reason = quality_mask(batch, np.array([-1]), max_speed_kmh=200)
    assert reason.tolist() == ["flag"]


def test_empty_batch_gives_empty_arrays():
    usable, reason = quality_mask(
        WalkthroughBatch.empty(), np.empty(0, np.int64), max_speed_kmh=200
    )
    assert usable.shape == (0,)
    assert reason.shape == (0,)


def test_misaligned_segment_ids_are_rejected():
    batch = make_batch(["v1"], [T0], [24.5])
    with pytest.raises(ValueError, match="segment_id"):
        quality_mask(batch, np.array([1, 2]), max_speed_kmh=200)
