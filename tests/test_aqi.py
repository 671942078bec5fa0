"""HJ 633 sub-indices, the AQI and the street map's indicative AQI (docs/domain.md §2.4,
§2.5): literal arrays against values computed by hand from the standard's tables, and the
``aqi`` parameter of ``GET /api/v1/segments/stats`` through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import numpy as np
import pytest
from support import api_client

from telemetry.aqi import (
    AQI_POLLUTANTS,
    BreakpointTable,
    aqi,
    indicative_aqi,
    level_of,
    sub_index,
)
from telemetry.settings import Settings

IAQI = [0, 50, 100, 150, 200, 300, 400, 500]
# HJ 633-2012 Table 1; HJ 633-2026 Table 3 differs only in PM10 and PM2.5.
CURVES_2012 = {
    ("so2", "24h"): [0, 50, 150, 475, 800, 1600, 2100, 2620],
    ("so2", "1h"): [0, 150, 500, 650, 800],
    ("no2", "24h"): [0, 40, 80, 180, 280, 565, 750, 940],
    ("no2", "1h"): [0, 100, 200, 700, 1200, 2340, 3090, 3840],
    ("co", "24h"): [0, 2, 4, 14, 24, 36, 48, 60],
    ("co", "1h"): [0, 5, 10, 35, 60, 90, 120, 150],
    ("o3", "1h"): [0, 160, 200, 300, 400, 800, 1000, 1200],
    ("o3", "8h"): [0, 100, 160, 215, 265, 800],
    ("pm10", "24h"): [0, 50, 150, 250, 350, 420, 500, 600],
    ("pm25", "24h"): [0, 35, 75, 115, 150, 250, 350, 500],
}
CURVES_2026 = CURVES_2012 | {
    ("pm10", "24h"): [0, 50, 120, 250, 350, 420, 500, 600],
    ("pm25", "24h"): [0, 35, 60, 115, 150, 250, 350, 500],
}


def _rows(standard: str, curves: dict[tuple[str, str], list[int]]) -> list[dict[str, object]]:
    return [
        {
            "standard": standard,
            "pollutant": p,
            "averaging": a,
            "iaqi": i,
            "concentration": c,
            "unit": "mg/m3" if p == "co" else "ug/m3",
        }
        for (p, a), points in curves.items()
        for i, c in zip(IAQI, points, strict=False)
    ]


T2012 = BreakpointTable.from_rows("HJ 633-2012", _rows("HJ 633-2012", CURVES_2012))
T2026 = BreakpointTable.from_rows("HJ 633-2026", _rows("HJ 633-2026", CURVES_2026))
NAN = float("nan")


def _curve(table: BreakpointTable, pollutant: str, averaging: str):  # type: ignore[no-untyped-def]
    curve = table.curve(pollutant, averaging)
    assert curve is not None
    return curve


def test_sub_index_interpolates_and_rounds_up() -> None:
    no2 = _curve(T2026, "no2", "1h")
    # 150: 50 + 50/100 × 50 = 75; 201: 100 + 50/500 × 1 = 100.1 → 101; at a breakpoint its
    # IAQI; 0 → 0; negative and absent → none.
    got = sub_index([150.0, 201.0, 200.0, 100.0, 0.0, -1.0, NAN], no2)
    assert got.tolist() == pytest.approx([75, 101, 100, 50, 0, NAN, NAN], nan_ok=True)
    # SO2 24 h: 100 → 50 + 50/100 × 50 = 75.
    assert sub_index([100.0], _curve(T2026, "so2", "24h")).tolist() == [75]


def test_concentrations_are_rounded_half_to_even_first() -> None:
    co = _curve(T2026, "co", "1h")
    # CO to one decimal (values exact in binary): 7.25 → 7.2 → 50 + 50/5 × 2.2 = 72;
    # 2.75 → 2.8 → 50/5 × 2.8 = 28.
    assert sub_index([7.25, 2.75], co).tolist() == [72, 28]
    # Others to whole numbers: 119.5 → 120 (even), 120.5 → 120 (even): PM10 2026 IAQI 100.
    assert sub_index([119.5, 120.5], _curve(T2026, "pm10", "24h")).tolist() == [100, 100]


def test_the_2026_pm_curves_differ_from_2012() -> None:
    # PM2.5 75: 2012 IAQI 100; 2026 100 + 50/55 × 15 = 113.6 → 114.
    assert sub_index([75.0], _curve(T2012, "pm25", "24h")).tolist() == [100]
    assert sub_index([75.0], _curve(T2026, "pm25", "24h")).tolist() == [114]
    # PM10 135: 2012 50 + 50/100 × 85 = 92.5 → 93; 2026 100 + 50/130 × 15 = 105.8 → 106.
    assert sub_index([135.0], _curve(T2012, "pm10", "24h")).tolist() == [93]
    assert sub_index([135.0], _curve(T2026, "pm10", "24h")).tolist() == [106]


def test_above_the_last_breakpoint_the_last_iaqi() -> None:
    # SO2 1 h above 800 counts as 200, O3 8 h above 800 as 300 (HJ 633-2026); a full curve
    # stops at 500.
    assert sub_index([650.0, 800.0, 900.0], _curve(T2026, "so2", "1h")).tolist() == [150, 200, 200]
    assert sub_index([1000.0], _curve(T2026, "o3", "8h")).tolist() == [300]
    assert sub_index([1300.0], _curve(T2026, "o3", "1h")).tolist() == [500]


def test_aqi_primary_pollutants_and_levels() -> None:
    sub = np.array(
        [
            [75, 114, 20, NAN, NAN, NAN],  # PM2.5 primary, level 3
            [75, 75, 10, NAN, NAN, NAN],  # a tie: joint primary pollutants
            [40, 10, NAN, NAN, NAN, NAN],  # AQI ≤ 50: no primary pollutant
            [0, 0, 0, 0, 0, 0],  # the AQI is at least 1
            [NAN] * 6,  # nothing known
        ]
    )
    value, primary = aqi(sub)
    assert value.tolist() == pytest.approx([114, 75, 40, 1, NAN], nan_ok=True)
    assert primary.tolist() == [
        [False, True, False, False, False, False],
        [True, True, False, False, False, False],
        [False] * 6,
        [False] * 6,
        [False] * 6,
    ]
    assert level_of([0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500, NAN]).tolist() == [
        1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 0,
    ]  # fmt: skip


def test_a_curve_that_does_not_increase_is_refused() -> None:
    rows = _rows("X", {("no2", "1h"): [0, 100, 90]})
    with pytest.raises(ValueError, match="increase"):
        BreakpointTable.from_rows("X", rows)


def _columns(values: dict[str, float]) -> list[list[float]]:
    return [[values.get(p, NAN) for p in AQI_POLLUTANTS]]


def test_indicative_aqi_coverage_rule() -> None:
    median = _columns({"no2": 150.0, "pm25": 75.0, "co": 2.0})
    passes = [[3, 2, 3, 0, 0, 3]]
    days = [[3, 2, 3, 0, 0, 4]]
    args = {"table": T2026, "min_passes": 3, "min_drive_days": 4}

    hourly = indicative_aqi(median, passes, days, report="hourly", window_s=3600, **args)
    # so2 no data, no2 1 h 75 (2 passes: not enough), co 1 h 20, pm25 on the daily curve 114.
    assert hourly.averaging == ("1h", "1h", "1h", "1h", "24h", "24h")
    assert hourly.sub_index[0].tolist() == pytest.approx([NAN, NAN, 20, NAN, NAN, 114], nan_ok=True)
    assert hourly.value.tolist() == [114]
    assert hourly.level.tolist() == [3]

    daily = indicative_aqi(median, passes, days, report="daily", window_s=86400, **args)
    # Only PM2.5 rests on 4 drive days: 114.
    assert daily.sub_index[0].tolist() == pytest.approx([NAN] * 5 + [114], nan_ok=True)
    assert daily.averaging[3] == "8h"

    short = indicative_aqi(median, passes, days, report="daily", window_s=86399, **args)
    assert not short.covered.any()
    assert np.isnan(short.value).all()


# --- through the API -----------------------------------------------------------------------

DAYS = [datetime(2026, 11, d, 2, 0, tzinfo=UTC) for d in (1, 2, 3)]  # 10:00 CST
WINDOW = {"since": "2026-10-31T00:00:00Z", "until": "2026-11-04T00:00:00Z"}


@pytest.fixture
async def segment(pool: asyncpg.Pool) -> int:
    """One segment with three passes on three CST days: NO2 140/150/160, PM2.5 50/75/80,
    CO 1/2/3 → medians 150, 75 and 2."""
    segment_id: int = await pool.fetchval(
        "INSERT INTO road_segments (source, road_ref, seq, name, highway, length_m, coords,"
        " min_lon, min_lat, max_lon, max_lat)"
        " VALUES ('test', 'way/aqi', 0, 'Hubin Road', 'primary', 30.4,"
        " '[[118.0, 24.0], [118.0003, 24.0]]', 118.0, 24.0, 118.0003, 24.0) RETURNING id"
    )
    rows = [
        ("wt-01", DAYS[0], 140.0, 50.0, 1.0),
        ("wt-01", DAYS[1], 150.0, 75.0, 2.0),
        ("wt-02", DAYS[2], 160.0, 80.0, 3.0),
        ("wt-02", DAYS[2] + timedelta(seconds=1), None, None, None),
    ]
    await pool.executemany(
        "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, no2, pm25,"
        " co, segment_id, flag) VALUES ($1, $2, $2, 24.0, 118.0001, $3, $4, $5, $6, 'N')",
        [(*r, segment_id) for r in rows],
    )
    return segment_id


def _by_pollutant(item: dict[str, object]) -> dict[str, dict[str, object]]:
    indices = item["aqi"]
    assert isinstance(indices, dict)
    return {s["pollutant"]: s for s in indices["iaqi"]}


async def test_hourly_aqi_of_a_segment(client: httpx.AsyncClient, segment: int) -> None:
    response = await client.get(
        "/api/v1/segments/stats", params={"pollutant": "no2", "aqi": "hourly", **WINDOW}
    )

    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    assert item["segment_id"] == segment and item["median"] == 150.0
    index = item["aqi"]
    assert (index["report"], index["standard"], index["indicative"]) == (
        "hourly",
        "HJ 633-2026",
        True,
    )
    # NO2 1 h 150 → 75; PM2.5 75 on the daily curve → 114; CO 1 h 2.0 → 20.
    assert (index["aqi"], index["primary_pollutants"], index["level"]) == (114, ["pm25"], 3)
    assert (index["category"], index["colour"], index["rgb"]) == (
        "lightly polluted",
        "orange",
        "#FF7E00",
    )
    assert index["complete"] is False
    subs = _by_pollutant(item)
    assert {p: s["iaqi"] for p, s in subs.items()} == {
        "so2": None, "no2": 75, "co": 20, "o3": None, "pm10": None, "pm25": 114,
    }  # fmt: skip
    assert subs["no2"]["averaging"] == "1h" and subs["pm25"]["averaging"] == "24h"
    assert subs["co"]["concentration"] == 2.0 and subs["co"]["unit"] == "mg/m3"
    assert subs["no2"]["passes"] == 3 and subs["no2"]["drive_days"] == 3
    assert subs["so2"]["reason"] == "no pass with a value in the window"

    geojson = await client.get(
        "/api/v1/segments/stats.geojson", params={"pollutant": "no2", "aqi": "hourly", **WINDOW}
    )
    [feature] = geojson.json()["features"]
    assert feature["properties"]["aqi"]["aqi"] == 114

    plain = await client.get("/api/v1/segments/stats", params={"pollutant": "no2", **WINDOW})
    assert plain.json()["items"][0]["aqi"] is None


async def test_daily_aqi_needs_the_drive_days_and_the_window(
    settings: Settings, segment: int
) -> None:
    async with api_client(settings) as client:
        default = await client.get(
            "/api/v1/segments/stats", params={"pollutant": "no2", "aqi": "daily", **WINDOW}
        )
    # 3 drive days, 4 needed by default: no sub-index, no AQI.
    [item] = default.json()["items"]
    assert item["aqi"]["aqi"] is None
    assert _by_pollutant(item)["no2"]["reason"] == "fewer than 4 drive days"

    three = settings.model_copy(update={"segment_reliable_drive_days": 3})
    async with api_client(three) as client:
        daily = await client.get(
            "/api/v1/segments/stats", params={"pollutant": "no2", "aqi": "daily", **WINDOW}
        )
        short = await client.get(
            "/api/v1/segments/stats",
            params={
                "pollutant": "no2",
                "aqi": "daily",
                "since": "2026-11-01T00:00:00Z",
                "until": "2026-11-01T12:00:00Z",
            },
        )
    # NO2 24 h 150 → 100 + 50/100 × 70 = 135; PM2.5 114; CO 24 h 2.0 → 50.
    [item] = daily.json()["items"]
    assert (item["aqi"]["aqi"], item["aqi"]["primary_pollutants"]) == (135, ["no2"])
    assert _by_pollutant(item)["co"]["iaqi"] == 50
    [item] = short.json()["items"]
    assert item["aqi"]["aqi"] is None
    assert _by_pollutant(item)["no2"]["reason"] == (
        "the window is shorter than the averaging time (24h)"
    )
