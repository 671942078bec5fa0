"""Sensor faults on literal arrays: flat lines (across batches), range limits, steps."""

from __future__ import annotations

import numpy as np
import pytest

from telemetry.kinds.walkthrough.detection.faults import (
    FaultParams,
    FaultState,
    sensor_faults,
)
from telemetry.kinds.walkthrough.record import POLLUTANTS

S = 1_000_000
T0 = 1_795_305_600 * S
NO2 = POLLUTANTS.index("no2")
PM25 = POLLUTANTS.index("pm25")
PARAMS = FaultParams(
    flatline_s=3, full_scale={"pm25": 1000.0}, max_step={"no2": 100.0}, max_gap_s=10
)


def _values(**columns: list[float]) -> np.ndarray:
    n = len(next(iter(columns.values())))
    values = np.full((n, len(POLLUTANTS)), np.nan)
    for name, column in columns.items():
        values[:, POLLUTANTS.index(name)] = column
    return values


def _run(vehicles, seconds, state=None, params=PARAMS, **columns):
    return sensor_faults(
        np.array(vehicles, dtype=object),
        T0 + np.array(seconds, dtype=np.int64) * S,
        _values(**columns),
        FaultState.empty() if state is None else state,
        params,
    )


def test_flatline_from_the_configured_duration() -> None:
    found = _run(["a"] * 6, [0, 1, 2, 3, 4, 5], no2=[5, 5, 5, 5, 6, 6])

    # 5 began at 0 s: 3 s later (reading at 3 s) it is a flat line; 6 starts a new run.
    assert found.code.tolist() == ["", "", "", "flatline", "", ""]
    assert found.channels[:, NO2].tolist() == [False, False, False, True, False, False]
    assert found.pollutants.tolist() == ["", "", "", "no2", "", ""]


def test_flatline_carries_across_batches_and_vehicles_are_apart() -> None:
    first = _run(["a", "b", "a"], [0, 0, 1], no2=[5, 5, 5])
    second = _run(["b", "a", "a"], [1, 2, 3], state=first.state, no2=[7, 5, 5])

    assert first.code.tolist() == ["", "", ""]
    assert second.code.tolist() == ["", "", "flatline"]
    assert sorted(second.state.vehicle_id.tolist()) == ["a", "b"]


def test_absent_values_break_a_run_and_late_readings_are_not_judged() -> None:
    first = _run(["a"] * 3, [0, 1, 2], no2=[5, np.nan, 5])
    late = _run(["a", "a"], [1, 5], state=first.state, no2=[5, 5])

    # The run restarted at 2 s; at 5 s it has lasted 3 s. The reading at 1 s is late.
    assert first.code.tolist() == ["", "", ""]
    assert late.code.tolist() == ["", "flatline"]
    assert late.state.last_us.tolist() == [T0 + 5 * S]


def test_value_at_full_scale_is_a_range_limit() -> None:
    found = _run(["a"] * 3, [0, 1, 2], pm25=[999.0, 1000.0, 1500.0])

    assert found.code.tolist() == ["", "range_limit", "range_limit"]
    assert found.channels[:, PM25].tolist() == [False, True, True]


def test_implausible_steps_mark_the_jump_and_the_return() -> None:
    # 100 µg/m³ per second at most: +150 in 1 s is a step, +150 over 2 s is not; the gap of
    # 20 s (> max_gap_s) is not judged.
    found = _run(["a"] * 6, [0, 1, 2, 4, 24, 25], no2=[10.0, 160.0, 10.0, 160.0, 900.0, 950.0])

    assert found.code.tolist() == ["", "step", "step", "", "", ""]


def test_precedence_and_several_channels() -> None:
    found = _run(["a"] * 4, [0, 1, 2, 3], pm25=[1000.0] * 4, no2=[5.0, 5.0, 5.0, 5.0])

    assert found.code.tolist() == ["range_limit"] * 4
    assert found.pollutants.tolist() == ["pm25", "pm25", "pm25", "pm25,no2"]


def test_unconfigured_rules_judge_nothing_and_unknown_pollutants_are_refused() -> None:
    params = FaultParams(flatline_s=600, full_scale={}, max_step={}, max_gap_s=10)
    found = _run(["a"] * 3, [0, 1, 2], params=params, pm25=[1e6, 0.0, 1e6])

    assert found.code.tolist() == ["", "", ""]
    with pytest.raises(ValueError, match="unknown pollutants"):
        FaultParams(flatline_s=1, full_scale={"nox": 1.0}, max_step={}, max_gap_s=10)


def test_empty_batch_keeps_the_state() -> None:
    state = _run(["a"], [0], no2=[5.0]).state
    found = sensor_faults(
        np.empty(0, dtype=object), np.empty(0, dtype=np.int64), _values(no2=[]), state, PARAMS
    )

    assert found.code.tolist() == []
    assert found.state is state
