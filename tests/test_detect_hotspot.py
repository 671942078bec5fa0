import math

import numpy as np
import pytest

from telemetry.kinds.walkthrough.detection.hotspot import BackgroundWindow, background_level

S = 1_000_000
NOW = 1_780_000_000 * S


def test_background_is_the_low_percentile_inside_the_window():
    ts = NOW - np.array([1000, 800, 600, 400, 200, 0, -10], dtype=np.int64) * S
    values = np.array([1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 2.0])
    # Inside [now - 900 s, now]: 10, 20, 30, 40, 50 (the 1000 s old and the future value are out).
    level = background_level(ts, values, now_us=NOW, window_s=900, percentile=25, min_samples=5)
    assert level == pytest.approx(20.0)


def test_window_edges_are_inclusive():
    ts = np.array([NOW - 900 * S, NOW], dtype=np.int64)
    level = background_level(
        ts, np.array([4.0, 8.0]), now_us=NOW, window_s=900, percentile=0, min_samples=2
    )
    assert level == 4.0


def test_background_is_nan_with_too_few_finite_values():
    ts = NOW - np.arange(5, dtype=np.int64) * S
    values = np.array([5.0, np.nan, 6.0, np.nan, 7.0])
    kw = {"now_us": NOW, "window_s": 900, "percentile": 10}
    assert math.isnan(background_level(ts, values, min_samples=4, **kw))
    assert background_level(ts, values, min_samples=3, **kw) == pytest.approx(5.2)


def test_window_keeps_finite_values_per_pollutant_and_reports_levels():
    window = BackgroundWindow(capacity=100)
    ts = NOW - np.arange(10, dtype=np.int64)[::-1] * S
    window.update(ts, {"pm25": np.arange(10.0), "no2": np.full(10, np.nan)})
    assert len(window) == 10
    levels = window.levels(NOW, window_s=900, percentile=0, min_samples=5)
    assert levels["pm25"] == 0.0
    assert math.isnan(levels["no2"])


def test_full_window_drops_the_oldest_values():
    window = BackgroundWindow(capacity=4)
    window.update(
        np.array([NOW - 5 * S, NOW - 4 * S, NOW - 3 * S], dtype=np.int64),
        {"pm25": np.array([1.0, 2.0, 3.0])},
    )
    window.update(np.array([NOW - 2 * S, NOW - S], dtype=np.int64), {"pm25": np.array([4.0, 5.0])})
    assert len(window) == 4
    levels = window.levels(NOW, window_s=900, percentile=0, min_samples=4)
    assert levels["pm25"] == 2.0


def test_update_larger_than_capacity_keeps_the_last_values():
    window = BackgroundWindow(capacity=3)
    ts = NOW - np.arange(6, dtype=np.int64)[::-1] * S
    window.update(ts, {"co": np.array([9.0, 9.0, 9.0, 0.5, 0.6, 0.7])})
    assert window.levels(NOW, window_s=60, percentile=100, min_samples=3)["co"] == 0.7
    assert window.levels(NOW, window_s=60, percentile=0, min_samples=3)["co"] == 0.5


def test_old_values_age_out_of_the_window_without_new_updates():
    window = BackgroundWindow()
    window.update(np.full(3, NOW, dtype=np.int64), {"pm10": np.array([10.0, 20.0, 30.0])})
    later = NOW + 901 * S
    assert math.isnan(window.levels(later, window_s=900, percentile=10, min_samples=1)["pm10"])


def test_misaligned_update_is_rejected():
    with pytest.raises(ValueError, match="pm25"):
        BackgroundWindow().update(np.array([NOW]), {"pm25": np.array([1.0, 2.0])})
