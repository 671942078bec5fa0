"""The remote-sensing judgement with literal arrays: VSP, validity gates, fuel-type limits and
the high-emitter rule (consecutive valid exceedances within six calendar months)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from telemetry.kinds.remote_sensing.detection import (
    RS_POLLUTANTS,
    GateTable,
    LimitTable,
    cst_month,
    find_confirmations,
    judge_limits,
    judge_validity,
    month_start_us,
    vsp_kw_per_t,
)

NAN = np.nan


def us(text: str) -> int:
    """Epoch µs of an RFC 3339 time with offset."""
    t = dt.datetime.fromisoformat(text)
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def objects(*items: object) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


# --- VSP -----------------------------------------------------------------------------------


def test_vsp_follows_jimenez_palacios() -> None:
    speed = np.array([10.0, 20.0, 0.0, 15.0])
    accel = np.array([0.5, 0.0, 2.0, -1.0])
    grade = np.array([0.02, 0.0, 0.1, -0.05])

    vsp = vsp_kw_per_t(speed, accel, grade)

    # 10·(0.55 + 0.1962 + 0.132) + 0.302; 20·0.132 + 0.000302·8000; standing still; downhill
    expected = [9.084, 5.056, 0.0, 15 * (-1.1 - 0.4905 + 0.132) + 0.000302 * 15**3]
    np.testing.assert_allclose(vsp, expected, rtol=1e-12)


def test_vsp_is_nan_where_an_input_is_missing() -> None:
    vsp = vsp_kw_per_t([10.0, NAN, 10.0], [0.5, 0.5, NAN], [0.0, 0.0, 0.0])

    assert np.isfinite(vsp[0])
    assert np.isnan(vsp[1:]).all()


# --- validity ------------------------------------------------------------------------------

GATES = GateTable.from_rows(
    [
        {"parameter": "slope_pct", "min_value": 0, "max_value": None, "reason": "downhill"},
        {"parameter": "temp_c", "min_value": -20, "max_value": 45, "reason": "temp_range"},
        {"parameter": "wind_speed_ms", "min_value": None, "max_value": 5, "reason": "windy"},
        {"parameter": "speed_kmh", "min_value": 10, "max_value": 110, "reason": "speed"},
        {"parameter": "accel_ms2", "min_value": -1, "max_value": 3, "reason": "accel"},
        {
            "parameter": "vsp_kw_t",
            "min_value": 0,
            "max_value": 20,
            "applies_to": "gasoline",
            "reason": "vsp",
        },
    ]
)


def _values(**columns: list[float]) -> dict[str, np.ndarray]:
    n = len(next(iter(columns.values())))
    base = {
        "slope_pct": [1.0] * n,
        "temp_c": [20.0] * n,
        "wind_speed_ms": [2.0] * n,
        "speed_kmh": [40.0] * n,
        "accel_ms2": [0.5] * n,
        "vsp_kw_t": [5.0] * n,
        "rh_pct": [50.0] * n,
        "pressure_kpa": [101.0] * n,
        **{column: [NAN] * n for column, _ in RS_POLLUTANTS.values()},
        "no_ppm": [100.0] * n,
    }
    base.update(columns)
    return {k: np.array(v, dtype=np.float64) for k, v in base.items()}


def test_each_gate_names_its_reason_and_the_first_failure_wins() -> None:
    values = _values(
        slope_pct=[1.0, -0.5, 1.0, 1.0, 1.0, 1.0, 1.0, -2.0],
        temp_c=[20.0, 20.0, 46.0, 20.0, 20.0, 20.0, 20.0, 50.0],
        wind_speed_ms=[2.0, 2.0, 2.0, 5.5, 2.0, 2.0, 2.0, 9.0],
        speed_kmh=[40.0, 40.0, 40.0, 40.0, 8.0, 40.0, 40.0, 40.0],
        accel_ms2=[0.5, 0.5, 0.5, 0.5, 0.5, 3.5, 0.5, 0.5],
        vsp_kw_t=[5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 25.0, 5.0],
    )
    fuel = objects(*["gasoline"] * 8)

    valid, reason = judge_validity(values, fuel, GATES)

    assert valid.tolist() == [True] + [False] * 7
    assert reason.tolist() == [
        "",
        "downhill",
        "temp_range",
        "windy",
        "speed",
        "accel",
        "vsp",
        "downhill",
    ]


def test_a_bound_is_inclusive_and_the_vsp_gate_applies_only_to_its_fuel_type() -> None:
    values = _values(
        slope_pct=[0.0, 1.0, 1.0],
        wind_speed_ms=[5.0, 2.0, 2.0],
        vsp_kw_t=[20.0, 25.0, 25.0],
    )
    fuel = objects("gasoline", "diesel", "gasoline")

    valid, reason = judge_validity(values, fuel, GATES)

    assert valid.tolist() == [True, True, False]
    assert reason.tolist() == ["", "", "vsp"]


def test_a_missing_gated_value_or_no_pollutant_at_all_is_invalid() -> None:
    values = _values(wind_speed_ms=[NAN, 2.0, 2.0], vsp_kw_t=[5.0, NAN, 5.0])
    values["no_ppm"] = np.array([100.0, 100.0, NAN])
    fuel = objects("diesel", "gasoline", "diesel")

    valid, reason = judge_validity(values, fuel, GATES)

    assert not valid.any()
    assert reason.tolist() == ["missing_wind_speed_ms", "missing_vsp_kw_t", "no_measurement"]


def test_an_unknown_gate_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="rain"):
        GateTable.from_rows([{"parameter": "rain", "max_value": 0, "reason": "rain"}])


# --- limits --------------------------------------------------------------------------------

LIMITS = LimitTable.from_rows(
    [
        {"id": 1, "fuel_type": "diesel", "pollutant": "opacity", "limit_value": 30,
         "unit": "%", "effective_from": "2017-07-27"},
        {"id": 2, "fuel_type": "diesel", "pollutant": "no", "limit_value": 1500,
         "unit": "ppm", "effective_from": "2017-07-27"},
        {"id": 3, "fuel_type": "gasoline", "pollutant": "co", "limit_value": 2.5,
         "unit": "%", "effective_from": "2019-05-01", "effective_to": "2025-01-01"},
        {"id": 4, "fuel_type": "gasoline", "pollutant": "co", "limit_value": 1.5,
         "unit": "%", "effective_from": "2025-01-01"},
        {"id": 5, "fuel_type": "gasoline", "pollutant": "no", "limit_value": 1000,
         "unit": "ppm", "effective_from": "2019-05-01"},
    ]
)  # fmt: skip


def test_limits_are_by_fuel_type_pollutant_and_effective_date() -> None:
    ts = np.array(
        [
            us("2024-06-01T10:00:00+08:00"),
            us("2025-06-01T10:00:00+08:00"),
            us("2025-06-01T10:00:00+08:00"),
            us("2025-06-01T10:00:00+08:00"),
            us("2019-04-30T23:59:00+08:00"),
            us("2025-06-01T10:00:00+08:00"),
        ]
    )
    fuel = objects("gasoline", "gasoline", "diesel", "diesel", "gasoline", "unknown")
    values = _values(
        co_pct=[2.0, 2.0, 9.0, 0.1, 9.0, 9.0],
        no_ppm=[1200.0, 900.0, 1600.0, 1400.0, 9000.0, 9000.0],
        opacity_pct=[NAN, NAN, 35.0, 30.0, NAN, NAN],
    )
    valid = np.ones(6, dtype=bool)

    flags = judge_limits(values, fuel, ts, valid, LIMITS)

    co_row, co_judged, co_over = flags["co"]
    assert co_row.tolist() == [2, 3, -1, -1, -1, -1]
    assert co_judged.tolist() == [True, True, False, False, False, False]
    assert co_over.tolist() == [False, True, False, False, False, False]
    _, no_judged, no_over = flags["no"]
    assert no_judged.tolist() == [True, True, True, True, False, False]
    assert no_over.tolist() == [True, False, True, False, False, False]
    _, op_judged, op_over = flags["opacity"]
    assert op_judged.tolist() == [False, False, True, True, False, False]
    assert op_over.tolist() == [False, False, True, False, False, False]  # 30 % is not over 30 %


def test_an_invalid_pass_is_never_judged_against_a_limit() -> None:
    ts = np.array([us("2025-06-01T10:00:00+08:00")] * 2)
    values = _values(no_ppm=[5000.0, 5000.0])

    flags = judge_limits(values, objects("diesel", "diesel"), ts, np.array([True, False]), LIMITS)

    _, judged, over = flags["no"]
    assert judged.tolist() == [True, False]
    assert over.tolist() == [True, False]


# --- calendar months -----------------------------------------------------------------------


def test_calendar_months_are_counted_in_china_standard_time() -> None:
    months = cst_month(np.array([us("2025-06-30T15:59:59+00:00"), us("2025-06-30T16:00:00+00:00")]))

    assert (months.astype("datetime64[M]").astype(str)).tolist() == ["2025-06", "2025-07"]
    assert month_start_us(months[1:]).tolist() == [us("2025-07-01T00:00:00+08:00")]


# --- the high-emitter rule -----------------------------------------------------------------


def rule(
    plates: list[str],
    times: list[str],
    over: list[bool],
    *,
    judged: list[bool] | None = None,
    new: list[bool] | None = None,
) -> list[list[int]]:
    """The evidence (input positions) of every confirmation."""
    n = len(plates)
    found = find_confirmations(
        np.array(plates, dtype=object),
        np.array([us(t) for t in times], dtype=np.int64),
        np.array(judged if judged is not None else [True] * n),
        np.array(over),
        np.array(new if new is not None else [True] * n),
    )
    return [found.evidence(i).tolist() for i in range(len(found))]


def test_two_consecutive_exceedances_confirm_a_high_emitter() -> None:
    evidence = rule(
        ["京A1", "京A1"], ["2025-03-01T09:00:00+08:00", "2025-03-20T09:00:00+08:00"], [True, True]
    )

    assert evidence == [[0, 1]]


def test_a_single_exceedance_confirms_nothing() -> None:
    assert rule(["京A1"], ["2025-03-01T09:00:00+08:00"], [True]) == []


def test_six_calendar_months_include_the_first_and_the_sixth_month() -> None:
    within = rule(
        ["P", "P"], ["2025-01-31T23:00:00+08:00", "2025-06-30T23:59:00+08:00"], [True, True]
    )
    seventh = rule(
        ["P", "P"], ["2025-01-01T00:00:00+08:00", "2025-07-01T00:00:00+08:00"], [True, True]
    )
    # 2025-06-30T16:30Z is already 1 July in China Standard Time.
    seventh_cst = rule(
        ["P", "P"], ["2025-01-15T12:00:00+08:00", "2025-06-30T16:30:00+00:00"], [True, True]
    )

    assert within == [[0, 1]]
    assert seventh == []
    assert seventh_cst == []


def test_a_valid_pass_under_the_limit_breaks_the_run() -> None:
    evidence = rule(
        ["P", "P", "P"],
        ["2025-03-01T09:00:00+08:00", "2025-03-02T09:00:00+08:00", "2025-03-03T09:00:00+08:00"],
        [True, False, True],
    )

    assert evidence == []


def test_an_invalid_pass_in_between_does_not_break_the_run() -> None:
    evidence = rule(
        ["P", "P", "P"],
        ["2025-03-01T09:00:00+08:00", "2025-03-02T09:00:00+08:00", "2025-03-03T09:00:00+08:00"],
        [True, False, True],
        judged=[True, False, True],
    )

    assert evidence == [[0, 2]]


def test_plates_are_judged_separately_whatever_the_input_order() -> None:
    evidence = rule(
        ["B", "A", "B", "A", "C"],
        [
            "2025-03-05T09:00:00+08:00",
            "2025-03-04T09:00:00+08:00",
            "2025-03-01T09:00:00+08:00",
            "2025-03-02T09:00:00+08:00",
            "2025-03-03T09:00:00+08:00",
        ],
        [True, False, True, True, True],
    )

    # A: 03-02 over, 03-04 under; B: 03-01 and 03-05 over; C: one pass.
    assert evidence == [[2, 0]]


def test_a_longer_run_confirms_again_with_the_whole_run_as_evidence() -> None:
    evidence = rule(
        ["P", "P", "P"],
        ["2025-03-01T09:00:00+08:00", "2025-04-01T09:00:00+08:00", "2025-05-01T09:00:00+08:00"],
        [True, True, True],
    )

    assert evidence == [[0, 1], [0, 1, 2]]


def test_evidence_keeps_only_the_run_inside_the_window() -> None:
    evidence = rule(
        ["P", "P", "P"],
        ["2025-01-10T09:00:00+08:00", "2025-05-10T09:00:00+08:00", "2025-07-10T09:00:00+08:00"],
        [True, True, True],
    )

    assert evidence == [[0, 1], [1, 2]]


def test_stored_history_alone_never_confirms_again() -> None:
    times = ["2025-03-01T09:00:00+08:00", "2025-03-02T09:00:00+08:00", "2025-03-09T09:00:00+08:00"]

    old_only = rule(["P"] * 3, times, [True, True, False], new=[False, False, True])
    late_pass = rule(["P"] * 3, times, [True, True, False], new=[False, True, False])

    assert old_only == []
    assert late_pass == [[0, 1]]
