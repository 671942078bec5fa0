"""Analyser lag, pure: re-timing a pollutant's series by its lag, the inlet position of a
reported value, and estimating the lag from a drive past a known source (docs/domain.md
§5.8)."""

from __future__ import annotations

import numpy as np
import pytest

from telemetry.geo import from_local_m
from telemetry.kinds.walkthrough.detection.lag import (
    estimate_lag,
    inlet_position,
    retime,
    retime_vehicles,
)

S = 1_000_000  # microseconds per second
T0 = 1_795_305_600 * S  # 2026-11-22T00:00:00Z
NAN = np.nan


def _us(seconds: list[float]) -> np.ndarray:
    return T0 + np.round(np.array(seconds) * S).astype(np.int64)


def test_a_non_integer_lag_interpolates_between_irregular_samples() -> None:
    ts = _us([0, 1, 2, 4, 5])  # a 2 s step between the third and fourth reading
    values = np.array([[0.0, 7.0], [10.0, 8.0], [20.0, 9.0], [40.0, 10.0], [50.0, 11.0]])

    out = retime(ts, values, np.array([1.5, 0.0]), max_gap_s=3)

    np.testing.assert_allclose(out[:, 0], [15.0, 25.0, 35.0, NAN, NAN])
    np.testing.assert_array_equal(out[:, 1], values[:, 1])  # no lag: unchanged


def test_a_gap_longer_than_the_limit_gives_nan_but_an_exact_sample_still_counts() -> None:
    ts = _us([0, 1, 2, 4, 5])
    values = np.array([[0.0], [10.0], [20.0], [40.0], [50.0]])

    across = retime(ts, values, np.array([1.5]), max_gap_s=1.5)
    exact = retime(ts, values, np.array([2.0]), max_gap_s=1.5)

    np.testing.assert_allclose(across[:, 0], [15.0, NAN, NAN, NAN, NAN])
    # t = 2 s + 2 s lands on the sample at 4 s; t = 0 s + 2 s on the one at 2 s.
    np.testing.assert_allclose(exact[:, 0], [20.0, NAN, 40.0, NAN, NAN])


def test_an_absent_value_is_bridged_by_its_finite_neighbours() -> None:
    ts = _us([0, 1, 2, 3])
    values = np.array([[0.0], [NAN], [20.0], [30.0]])

    out = retime(ts, values, np.array([1.0]), max_gap_s=2.5)

    np.testing.assert_allclose(out[:, 0], [10.0, 20.0, 30.0, NAN])


def test_values_after_a_batch_boundary_reach_the_rows_before_it() -> None:
    ts = _us(list(range(10)))
    values = (100.0 + np.arange(10.0))[:, None]
    lag = np.array([2.5])

    first_batch_alone = retime(ts[:5], values[:5], lag, max_gap_s=2)
    whole = retime(ts, values, lag, max_gap_s=2)

    # Alone, the first batch cannot know the air of its last rows: NaN, not a guess.
    np.testing.assert_allclose(first_batch_alone[:, 0], [102.5, 103.5, NAN, NAN, NAN])
    # Given the readings that followed (at least the lag past its horizon), it can.
    np.testing.assert_allclose(
        whole[:, 0], [102.5, 103.5, 104.5, 105.5, 106.5, 107.5, 108.5, NAN, NAN, NAN]
    )


def test_several_vehicles_are_retimed_each_along_its_own_readings() -> None:
    # Vehicle 0 at 0..3 s, vehicle 1 at 1..3 s: the same clock, different lags.
    vehicle = np.array([0, 0, 0, 0, 1, 1, 1])
    ts = _us([0, 1, 2, 3, 1, 2, 3])
    values = np.array([[0.0], [10.0], [20.0], [30.0], [500.0], [600.0], [700.0]])
    lags = np.array([[0.5], [1.0]])

    out = retime_vehicles(vehicle, ts, values, lags, max_gap_s=5)

    # Vehicle 0's last row would need 3.5 s: beyond its own readings, never vehicle 1's.
    np.testing.assert_allclose(out[:, 0], [5.0, 15.0, 25.0, NAN, 600.0, 700.0, NAN])
    np.testing.assert_allclose(
        out[:4], retime(ts[:4], values[:4], lags[0], max_gap_s=5), equal_nan=True
    )


def test_retime_refuses_readings_out_of_time_order() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        retime(_us([0, 2, 1]), np.zeros((3, 1)), np.array([1.0]), max_gap_s=5)


def test_the_inlet_position_is_the_track_at_the_time_the_air_entered() -> None:
    ts = _us([0, 1, 2, 3])
    lat = 24.0 + np.array([0.0, 1.0, 2.0, 4.0]) * 1e-4
    lon = np.full(4, 118.0)

    at_lat, at_lon = inlet_position(ts, lat, lon, np.array([1.5, 0.0]), max_gap_s=5)

    np.testing.assert_allclose(at_lat[:, 0], [NAN, NAN, 24.00005, 24.00015], rtol=0, atol=1e-9)
    np.testing.assert_allclose(at_lat[:, 1], lat)  # no lag: where it was reported
    np.testing.assert_allclose(at_lon[2:, 0], [118.0, 118.0])


def _drive_past_a_source(lag_s: float) -> tuple[np.ndarray, ...]:
    """A 1 Hz drive east at 10 m/s past a source 20 m off the road, and a pollutant whose
    plume (40 m wide) the analyser reports ``lag_s`` late, with a little deterministic noise."""
    t = np.arange(150.0)
    x = -400.0 + 10.0 * t
    lon, lat = from_local_m(x, np.zeros_like(x), 118.0, 24.0)
    src_lon, src_lat = from_local_m(np.array([600.0]), np.array([20.0]), 118.0, 24.0)
    plume = 10.0 + 80.0 * np.exp(-((x - 600.0) ** 2 + 20.0**2) / (2 * 40.0**2))
    reported = np.interp(t - lag_s, t, plume, left=10.0) + 0.5 * np.sin(1.7 * t)
    return _us(list(t)), lat, lon, reported, float(src_lat[0]), float(src_lon[0])


@pytest.mark.parametrize("lag_s", [12.0, 7.5])
def test_a_drive_past_a_source_gives_back_its_lag(lag_s: float) -> None:
    ts, lat, lon, values, src_lat, src_lon = _drive_past_a_source(lag_s)

    found = estimate_lag(
        ts, lat, lon, values, source_lat=src_lat, source_lon=src_lon, max_lag_s=30, sigma_m=40
    )

    assert abs(found.lag_s - lag_s) <= 1.0
    assert found.peak > 0.9
    assert found.prominence > 0.3
    assert found.lags_s.shape == found.correlation.shape == (61,)
    assert found.samples > 100


def test_an_estimate_needs_values_that_vary() -> None:
    ts, lat, lon, _, src_lat, src_lon = _drive_past_a_source(12.0)

    with pytest.raises(ValueError, match="no variation"):
        estimate_lag(ts, lat, lon, np.full(ts.shape, 5.0), source_lat=src_lat, source_lon=src_lon)
