import dataclasses
import datetime as dt
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pytest

from telemetry.alerts.exceedance import Exceedance
from telemetry.kinds.walkthrough.detection.judge import (
    DetectParams,
    assess_passes,
    judge_passes,
    severity_of,
)
from telemetry.kinds.walkthrough.detection.quality import quality_mask
from telemetry.kinds.walkthrough.detection.thresholds import ThresholdTable
from telemetry.kinds.walkthrough.detection.tracker import fragments
from telemetry.kinds.walkthrough.record import POLLUTANTS, WalkthroughBatch
from telemetry.settings import Settings


def detect_walkthrough(
    batch: WalkthroughBatch,
    segment_id: npt.NDArray[np.int64],
    thresholds: ThresholdTable,
    backgrounds: Mapping[str, float],
    params: DetectParams,
) -> list[Exceedance]:
    """One batch judged on its own, every pass in it closed: quality mask, passes, judging."""
    usable, _ = quality_mask(batch, segment_id, max_speed_kmh=params.max_speed_kmh)
    found = fragments(batch, segment_id, usable, max_gap_s=params.pass_max_gap_s)
    return judge_passes(found, thresholds, backgrounds, params)


S = 1_000_000
# 2026-02-01 08:00 CST (GB 3095-2012 in force) and 2026-03-02 08:00 CST (GB 3095-2026).
BEFORE = int(dt.datetime(2026, 2, 1, tzinfo=dt.UTC).timestamp()) * S
AFTER = int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()) * S


def threshold(id_, pollutant, limit, averaging, start, end, **kw):
    return {
        "id": id_,
        "kind": "walkthrough",
        "pollutant": pollutant,
        "limit_value": limit,
        "unit": "mg/m3" if pollutant == "co" else "ug/m3",
        "averaging": averaging,
        "source": f"GB 3095-{start.year}",
        "effective_from": start,
        "effective_to": end,
        **kw,
    }


THRESHOLDS = ThresholdTable.from_rows(
    [
        threshold(1, "pm25", 75, "24h", dt.date(2012, 2, 29), dt.date(2026, 3, 1)),
        threshold(7, "pm25", 60, "24h", dt.date(2026, 3, 1), dt.date(2031, 1, 1)),
        threshold(4, "no2", 200, "1h", dt.date(2012, 2, 29), None),
        threshold(9, "co", 10, "1h", dt.date(2012, 2, 29), None, severity="critical"),
    ]
)
PARAMS = DetectParams(
    max_speed_kmh=200,
    pass_max_gap_s=10,
    hotspot_factor=2.0,
    hotspot_percentile=10,
    hotspot_window_s=900,
    hotspot_min_pass_readings=2,
    hotspot_min_samples=60,
)


def make_batch(vehicle_id, ts_us, **columns) -> WalkthroughBatch:
    n = len(ts_us)
    base = {name: np.full(n, np.nan) for name in WalkthroughBatch.__dataclass_fields__}
    base.update(
        vehicle_id=np.array(vehicle_id, dtype=object),
        ts_us=np.array(ts_us, dtype=np.int64),
        received_us=np.array(ts_us, dtype=np.int64),
        lat=24.5 + np.arange(n) * 1e-5,
        lon=np.full(n, 118.1),
        flag=np.full(n, "N", dtype="<U1"),
        extra=np.full(n, None, dtype=object),
        units=np.full(n, None, dtype=object),
    )
    for name, values in columns.items():
        base[name] = np.array(values, dtype=base[name].dtype)
    return WalkthroughBatch(**base)


def test_pass_mean_over_pm25_reference_is_one_reference_ratio_not_an_exceedance():
    batch = make_batch(["v1"] * 5, BEFORE + np.arange(5) * S, pm25=[80, 90, 100, 90, 90])
    found = detect_walkthrough(batch, np.full(5, 11), THRESHOLDS, {}, PARAMS)
    assert len(found) == 1
    e = found[0]
    assert (e.kind, e.subject, e.segment_id, e.pollutant, e.rule, e.rules) == (
        "walkthrough",
        "segment:11",
        11,
        "pm25",
        "pass_screening",
        ("reference_ratio",),
    )
    assert e.threshold_id == 1
    assert e.limit_value == 75.0
    assert e.value == pytest.approx(90.0)
    assert e.peak == 100.0
    # C/S = 1.2 (占标率); five seconds are not a 24 h average, so no exceedance multiple.
    assert e.ratio == pytest.approx(1.2)
    assert e.multiple is None
    assert e.details["valid_average"] is False
    assert (e.first_us, e.last_us) == (BEFORE, BEFORE + 4 * S)
    assert (e.vehicle_id, e.readings, e.unit, e.averaging, e.severity) == (
        "v1",
        5,
        "ug/m3",
        "24h",
        "info",  # below the 1.5 warning band
    )
    assert "not a legal exceedance" in e.details["note"]
    assert e.details["confirmed"] is True
    assert (e.segments, e.confidence) == ((11,), "suspected")


def test_the_same_pass_mean_is_judged_by_the_limit_in_force_at_the_pass():
    pm25 = [66.0, 66.0, 66.0]
    before = make_batch(["v1"] * 3, BEFORE + np.arange(3) * S, pm25=pm25)
    after = make_batch(["v1"] * 3, AFTER + np.arange(3) * S, pm25=pm25)
    assert detect_walkthrough(before, np.full(3, 11), THRESHOLDS, {}, PARAMS) == []
    [e] = detect_walkthrough(after, np.full(3, 11), THRESHOLDS, {}, PARAMS)
    assert (e.threshold_id, e.limit_value) == (7, 60.0)
    assert e.ratio == pytest.approx(1.1)


def test_unusable_readings_do_not_count_towards_the_pass_mean():
    batch = make_batch(
        ["v1"] * 5,
        BEFORE + np.arange(5) * S,
        pm25=[70, 1000, 1000, 70, 70],
        flag=["N", "D", "N", "N", "N"],
    )
    segment = np.array([11, 11, -1, 11, 11])
    assert detect_walkthrough(batch, segment, THRESHOLDS, {}, PARAMS) == []


def test_severity_follows_the_stated_ratio_bands():
    co = {"info": [11.0, 11.0], "warning": [16.0, 16.0], "critical": [31.0, 31.0]}
    for severity, values in co.items():
        batch = make_batch(["v1"] * 2, AFTER + np.arange(2) * S, co=values)
        [e] = detect_walkthrough(batch, np.full(2, 3), THRESHOLDS, {}, PARAMS)
        assert (e.pollutant, e.unit, e.limit_value) == ("co", "mg/m3", 10.0)
        assert e.severity == severity, (values, e.ratio)
    assert severity_of(1.49, PARAMS) == "info"
    assert severity_of(1.5, PARAMS) == "warning"
    assert severity_of(3.0, PARAMS) == "critical"


def test_exceedance_multiple_only_where_the_pass_holds_a_valid_average():
    # A vehicle stopped 46 minutes on one segment: 2760 one-second NO2 readings, enough for an
    # hourly value (45 minutes of sampling, docs/domain.md §2.3).
    n = 46 * 60
    batch = make_batch(["v1"] * n, AFTER + np.arange(n) * S, no2=np.full(n, 300.0))
    [e] = detect_walkthrough(batch, np.full(n, 4), THRESHOLDS, {}, PARAMS)
    assert e.ratio == pytest.approx(1.5)
    assert e.multiple == pytest.approx(0.5)
    assert e.details["valid_average"] is True
    # Long enough on one spot to be a fixed-point measurement (定点复测): confirmed at once.
    assert (e.confidence, e.details["fixed_point"]) == ("confirmed", True)


def test_a_local_trigger_is_its_own_rule_not_a_limit():
    table = ThresholdTable.from_rows(
        [
            threshold(
                30,
                "tvoc",
                400,
                "instant",
                dt.date(2024, 1, 1),
                None,
                tier="trigger",
                source="DB3502/T 153-2024",
                confirmed=False,
            )
        ]
    )
    batch = make_batch(["v1"] * 3, AFTER + np.arange(3) * S, tvoc=[500.0, 520.0, 480.0])
    [e] = detect_walkthrough(batch, np.full(3, 9), table, {}, PARAMS)
    assert (e.rules, e.threshold_id, e.limit_value) == (("fixed_point_trigger",), 30, 400.0)
    assert e.ratio == pytest.approx(1.25)
    assert e.multiple is None
    assert "fixed-point measurement" in e.details["note"]


def test_plume_against_background_is_a_hotspot():
    # Segment 12: a plume (no2 mean 50 against background 20); segment 13: ordinary air.
    ts = AFTER + np.arange(6) * S
    batch = make_batch(["v2"] * 6, ts, no2=[45, 55, 50, 22, 25, 21])
    segment = np.array([12, 12, 12, 13, 13, 13])
    found = detect_walkthrough(batch, segment, THRESHOLDS, {"no2": 20.0}, PARAMS)
    assert len(found) == 1
    e = found[0]
    # The NO2 reference row (200, 1 h) was evaluated too: the ratio reported is C/S.
    assert (e.subject, e.pollutant, e.rules, e.threshold_id) == (
        "segment:12",
        "no2",
        ("hotspot",),
        4,
    )
    assert e.value == pytest.approx(50.0)
    assert e.ratio == pytest.approx(0.25)
    assert e.details["hotspot_ratio"] == pytest.approx(1.25)
    assert e.details["background"] == 20.0
    assert e.severity == "info"
    assert (e.first_us, e.last_us, e.readings) == (ts[0], ts[2], 3)


def test_hotspot_without_a_reference_is_measured_against_the_background():
    ts = AFTER + np.arange(3) * S
    batch = make_batch(["v2"] * 3, ts, o3=[90.0, 100.0, 110.0])
    [e] = detect_walkthrough(batch, np.full(3, 12), THRESHOLDS, {"o3": 20.0}, PARAMS)
    assert (e.rules, e.threshold_id, e.limit_value, e.averaging) == (("hotspot",), None, 40.0, None)
    assert e.ratio == pytest.approx(2.5)
    assert e.severity == "warning"
    assert "own" in e.source and "docs/domain.md" in e.source


def test_hotspot_needs_enough_readings_in_the_pass():
    batch = make_batch(["v2"] * 2, AFTER + np.array([0, 60]) * S, no2=[90, 90])
    # Two passes of one reading each, split by the 60 s gap.
    assert detect_walkthrough(batch, np.full(2, 12), THRESHOLDS, {"no2": 20.0}, PARAMS) == []
    single = dataclasses.replace(PARAMS, hotspot_min_pass_readings=1)
    assert len(detect_walkthrough(batch, np.full(2, 12), THRESHOLDS, {"no2": 20.0}, single)) == 2


def test_no_hotspot_without_a_background():
    batch = make_batch(["v2"] * 3, AFTER + np.arange(3) * S, no2=[90, 90, 90])
    for backgrounds in ({}, {"no2": float("nan")}, {"no2": 0.0}):
        assert detect_walkthrough(batch, np.full(3, 12), THRESHOLDS, backgrounds, PARAMS) == []


def test_pass_over_a_limit_and_the_background_is_one_exceedance_listing_both_rules():
    batch = make_batch(
        ["v1", "v1", "v3", "v3"], AFTER + np.array([0, 1, 0, 1]) * S, pm25=[200, 220, 10, 12]
    )
    found = detect_walkthrough(batch, np.full(4, 5), THRESHOLDS, {"pm25": 30.0}, PARAMS)
    [e] = found
    assert (e.vehicle_id, e.rules) == ("v1", ("reference_ratio", "hotspot"))
    assert e.ratio == pytest.approx(3.5)
    assert e.severity == "critical"


def test_passes_on_segments_of_one_road_share_the_road_as_subject():
    ts = AFTER + np.arange(6) * S
    batch = make_batch(["v1"] * 6, ts, pm25=[200.0] * 6)
    segment = np.array([21, 21, 22, 22, 23, 23])
    usable, _ = quality_mask(batch, segment, max_speed_kmh=PARAMS.max_speed_kmh)
    passes = fragments(batch, segment, usable, max_gap_s=PARAMS.pass_max_gap_s)
    roads = {21: "demo/7", 22: "demo/7", 23: "demo/8"}
    found = judge_passes(passes, THRESHOLDS, {}, PARAMS, roads)
    assert [(e.subject, e.segments) for e in found] == [
        ("road:demo/7", (21,)),
        ("road:demo/7", (22,)),
        ("road:demo/8", (23,)),
    ]


def test_clean_passes_are_valid_judged_and_under_every_rule():
    ts = AFTER + np.arange(7) * S
    # v1: clean pm25 pass (3 readings); v2: one reading only (not valid); v3: a plume.
    batch = make_batch(
        ["v1", "v1", "v1", "v2", "v3", "v3", "v3"], ts, pm25=[20, 22, 21, 20, 90, 95, 99]
    )
    usable, _ = quality_mask(batch, np.full(7, 5), max_speed_kmh=PARAMS.max_speed_kmh)
    passes = fragments(batch, np.full(7, 5), usable, max_gap_s=PARAMS.pass_max_gap_s)
    result = assess_passes(passes, THRESHOLDS, {"pm25": 15.0}, PARAMS)
    j = POLLUTANTS.index("pm25")
    assert passes.vehicle_id.tolist() == ["v1", "v2", "v3"]
    assert result.clean[:, j].tolist() == [True, False, False]
    # No value and no rule for NO2: never clean.
    assert not result.clean[:, POLLUTANTS.index("no2")].any()
    assert [e.vehicle_id for e in result.exceedances] == ["v3"]


def test_per_pass_backgrounds_are_used_row_by_row():
    ts = AFTER + np.arange(4) * S
    batch = make_batch(["v1", "v1", "v2", "v2"], ts, o3=[50.0, 50.0, 50.0, 50.0])
    usable, _ = quality_mask(batch, np.full(4, 5), max_speed_kmh=PARAMS.max_speed_kmh)
    passes = fragments(batch, np.full(4, 5), usable, max_gap_s=PARAMS.pass_max_gap_s)
    backgrounds = np.full((2, len(POLLUTANTS)), np.nan)
    backgrounds[:, POLLUTANTS.index("o3")] = [20.0, 40.0]  # each vehicle's own background
    found = judge_passes(passes, THRESHOLDS, backgrounds, PARAMS)
    assert [e.vehicle_id for e in found] == ["v1"]


def test_empty_batch_has_no_exceedances():
    empty = WalkthroughBatch.empty()
    assert detect_walkthrough(empty, np.empty(0, np.int64), THRESHOLDS, {}, PARAMS) == []


def test_params_come_from_settings():
    settings = Settings(pass_max_gap_s=5.0, hotspot_factor=3.0)
    params = DetectParams.from_settings(settings)
    assert params.pass_max_gap_s == 5.0
    assert params.hotspot_factor == 3.0
    assert params.max_speed_kmh == settings.quality_max_speed_kmh
    assert params.hotspot_min_samples == settings.hotspot_min_samples
    assert (params.warning_ratio, params.critical_ratio) == (1.5, 3.0)
    assert params.fixed_point_s == settings.alert_fixed_point_s
