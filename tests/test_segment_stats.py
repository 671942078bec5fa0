"""``GET /api/v1/segments/stats``: the street map by the method of mobile-monitoring studies
(docs/domain.md §5.1), checked against hand-computed medians of pass means."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from support import api_client

from telemetry.settings import Settings

DAY1 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # 10:00 CST on 1 November
DAY2 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 CST on 2 November
LATE = datetime(2026, 11, 1, 17, 0, tzinfo=UTC)  # 01:00 CST on 2 November
WINDOW = {"since": "2026-10-31T00:00:00Z", "until": "2026-11-03T00:00:00Z"}
BOX_A = "117.9999,23.9999,118.0004,24.0001"


async def _segment(pool: asyncpg.Pool, ref: str, lon: float) -> int:
    segment_id: int = await pool.fetchval(
        "INSERT INTO road_segments (source, road_ref, seq, name, highway, length_m, coords,"
        " min_lon, min_lat, max_lon, max_lat)"
        " VALUES ('test', $1, 0, 'Hubin Road', 'primary', 30.4, $2, $3, 24.0, $4, 24.0)"
        " RETURNING id",
        ref,
        [[lon, 24.0], [lon + 0.0003, 24.0]],
        lon,
        lon + 0.0003,
    )
    return segment_id


@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> tuple[int, int]:
    """Segment A with five no2 passes (means 20, 50, 8, 30, 100 over two CST days) and
    segment B with one (100)."""
    a = await _segment(pool, "way/a", 118.0)
    b = await _segment(pool, "way/b", 118.01)
    s = timedelta(seconds=1)
    rows = [
        # wt-01, day 1: A (10, 20, 30) → 20; B (100); back on A (40, 60) → 50: leaving the
        # box makes a new pass even though no gap exceeds 10 s.
        ("wt-01", DAY1, a, 10.0, "N"),
        ("wt-01", DAY1 + s, a, 20.0, "N"),
        ("wt-01", DAY1 + 2 * s, a, 30.0, "N"),
        ("wt-01", DAY1 + 3 * s, b, 100.0, "N"),
        ("wt-01", DAY1 + 4 * s, a, 40.0, "N"),
        ("wt-01", DAY1 + 5 * s, a, 60.0, "N"),
        # 25 s later (> 10 s): a new pass on A, 7 and 9 → 8; the flagged reading between them
        # is neither counted nor a neighbour.
        ("wt-01", DAY1 + 30 * s, a, 7.0, "N"),
        ("wt-01", DAY1 + 31 * s, a, 1000.0, "C"),
        ("wt-01", DAY1 + 32 * s, a, 9.0, "N"),
        # 01:00 CST on day 2: A (100) → 100, counted on 2 November.
        ("wt-01", LATE, a, 100.0, "N"),
        # wt-02, day 2: A (30, no value) → 30.
        ("wt-02", DAY2, a, 30.0, "N"),
        ("wt-02", DAY2 + s, a, None, "N"),
        # wt-02, later: A without any no2 value: no pass of no2.
        ("wt-02", DAY2 + 60 * s, a, None, "N"),
    ]
    await pool.executemany(
        "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, no2,"
        " pm25, segment_id, flag) VALUES ($1, $2, $2, 24.0, 118.0001, $4, 5.0, $3, $5)",
        rows,
    )
    return a, b


async def test_median_of_pass_means_per_segment(
    client: httpx.AsyncClient, seeded: tuple[int, int]
) -> None:
    a, b = seeded

    response = await client.get("/api/v1/segments/stats", params={"pollutant": "no2", **WINDOW})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["min_drive_days"] == 4
    summary = [
        (i["segment_id"], i["median"], i["passes"], i["drive_days"], i["reliable"], i["unit"])
        for i in body["items"]
    ]
    # A: passes 8, 20, 30, 50, 100 → median 30, on 1 and 2 November (CST).
    assert summary == [(a, 30.0, 5, 2, False, "ug/m3"), (b, 100.0, 1, 1, False, "ug/m3")]
    assert body["items"][0]["geometry"] == {
        "type": "LineString",
        "coordinates": [[118.0, 24.0], [118.0003, 24.0]],
    }
    assert body["next_after"] is None


async def test_bbox_and_window_filter_and_even_counts_interpolate(
    client: httpx.AsyncClient, seeded: tuple[int, int]
) -> None:
    a, _ = seeded

    boxed = await client.get(
        "/api/v1/segments/stats", params={"pollutant": "no2", "bbox": BOX_A, **WINDOW}
    )
    day1 = await client.get(
        "/api/v1/segments/stats",
        params={
            "pollutant": "no2",
            "bbox": BOX_A,
            "since": "2026-11-01T00:00:00Z",
            "until": "2026-11-01T03:00:00Z",
        },
    )
    without_late = await client.get(
        "/api/v1/segments/stats",
        params={
            "pollutant": "no2",
            "bbox": BOX_A,
            "since": "2026-11-01T00:00:00Z",
            "until": "2026-11-01T16:00:00Z",
        },
    )

    assert [(i["segment_id"], i["median"], i["passes"]) for i in boxed.json()["items"]] == [
        (a, 30.0, 5)
    ]
    # 20, 50, 8 → 20 on one day.
    assert [(i["median"], i["passes"], i["drive_days"]) for i in day1.json()["items"]] == [
        (20.0, 3, 1)
    ]
    assert [i["median"] for i in without_late.json()["items"]] == [20.0]


async def test_even_number_of_passes_takes_the_middle_mean(
    client: httpx.AsyncClient, seeded: tuple[int, int]
) -> None:
    # Until 2 November 01:00 UTC (before wt-02 drove): 8, 20, 50, 100 → (20 + 50) / 2 = 35.
    response = await client.get(
        "/api/v1/segments/stats",
        params={
            "pollutant": "no2",
            "bbox": BOX_A,
            "since": "2026-11-01T00:00:00Z",
            "until": "2026-11-02T01:00:00Z",
        },
    )

    assert [(i["median"], i["passes"], i["drive_days"]) for i in response.json()["items"]] == [
        (35.0, 4, 2)
    ]


async def test_reliable_from_the_configured_drive_days(
    settings: Settings, seeded: tuple[int, int]
) -> None:
    a, b = seeded
    async with api_client(
        settings.model_copy(update={"segment_reliable_drive_days": 2}), role="viewer"
    ) as viewer:
        response = await viewer.get("/api/v1/segments/stats", params={"pollutant": "no2", **WINDOW})

    body = response.json()
    assert body["min_drive_days"] == 2
    assert [(i["segment_id"], i["reliable"]) for i in body["items"]] == [(a, True), (b, False)]


async def test_pages_follow_next_after(client: httpx.AsyncClient, seeded: tuple[int, int]) -> None:
    a, b = seeded

    first = (
        await client.get(
            "/api/v1/segments/stats", params={"pollutant": "no2", "limit": 1, **WINDOW}
        )
    ).json()
    second = (
        await client.get(
            "/api/v1/segments/stats",
            params={"pollutant": "no2", "limit": 1, "after": first["next_after"], **WINDOW},
        )
    ).json()

    assert ([i["segment_id"] for i in first["items"]], first["next_after"]) == ([a], a)
    assert ([i["segment_id"] for i in second["items"]], second["next_after"]) == ([b], None)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/segments/stats", {"format": "geojson"}),
        ("/api/v1/segments/stats.geojson", {}),
    ],
)
async def test_geojson_feature_collection(
    client: httpx.AsyncClient, seeded: tuple[int, int], path: str, params: dict[str, str]
) -> None:
    a, _ = seeded

    response = await client.get(
        path, params={"pollutant": "no2", "bbox": BOX_A, **WINDOW, **params}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    body = json.loads(response.text)
    assert body["type"] == "FeatureCollection"
    assert body["next_after"] is None
    [feature] = body["features"]
    assert feature["type"] == "Feature"
    assert feature["id"] == a
    assert feature["geometry"] == {
        "type": "LineString",
        "coordinates": [[118.0, 24.0], [118.0003, 24.0]],
    }
    props = feature["properties"]
    assert (props["median"], props["passes"], props["drive_days"], props["reliable"]) == (
        30.0,
        5,
        2,
        False,
    )


@pytest.mark.parametrize(
    "params",
    [
        {"pollutant": "nox"},
        {"pollutant": "no2", "bbox": "118,24,117,25"},
        {"pollutant": "no2", "bbox": "118,24,119"},
        {"pollutant": "no2", "bbox": "118,95,119,96"},
        {"pollutant": "no2", "limit": 5001},
        {"pollutant": "no2", "since": "2025-01-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
        {},
    ],
)
async def test_bad_queries_are_422(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get("/api/v1/segments/stats", params=params)

    assert response.status_code == 422, response.text


async def test_stats_need_a_token(anonymous_client: httpx.AsyncClient) -> None:
    response = await anonymous_client.get("/api/v1/segments/stats", params={"pollutant": "no2"})

    assert response.status_code == 401


# --- analyser lag (docs/domain.md §5.8) ------------------------------------------------------

LAGGED = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)  # wt-lag's drive, 11:00 CST on 1 November
PLAIN = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # wt-plain's, the same drive a day later
DAY1_ONLY = {"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"}
DAY2_ONLY = {"since": "2026-11-02T00:00:00Z", "until": "2026-11-03T00:00:00Z"}


@pytest.fixture
async def lagged(pool: asyncpg.Pool) -> tuple[int, int]:
    """A held-out drive past a source, twice: segment C (t = 0…5 s, by the source), then D
    (6…17 s, no reading at 16 s), then off the map (18…21 s, and 28 s). The NO2 analyser is
    12 s late, so the plume sampled on C is reported on D (14…17 s). wt-lag has that lag
    registered; wt-plain, driving the same way a day later, has a lag for PM2.5 only."""
    c = await _segment(pool, "way/c", 118.02)
    d = await _segment(pool, "way/d", 118.03)
    reported = {12: 10.0, 13: 10.0, 14: 40.0, 15: 100.0, 17: 60.0, 19: 1000.0, 28: 500.0}
    rows = []
    for start, vehicle in ((LAGGED, "wt-lag"), (PLAIN, "wt-plain")):
        for t in [*range(16), *range(17, 22), 28]:
            segment = c if t <= 5 else d if t <= 17 else None
            flag = "C" if t == 19 else "N"  # a calibration reading: not a sample
            faults = ["no2"] if t == 13 else None  # a faulty NO2 channel: not a sample either
            value = reported.get(t, 10.0)
            rows.append((vehicle, start + timedelta(seconds=t), value, segment, flag, faults))
    await pool.executemany(
        "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, no2, pm25,"
        " segment_id, flag, fault_pollutants)"
        " VALUES ($1, $2, $2, 24.0, 118.0201, $3, 5.0, $4, $5, $6)",
        rows,
    )
    await pool.executemany(
        "INSERT INTO analyser_lags (vehicle_id, pollutant, lag_s, method, set_by)"
        " VALUES ($1, $2, 12, 'registered', 'test')",
        [("wt-lag", "no2"), ("wt-plain", "pm25")],
    )
    return c, d


def _medians(body: dict[str, list[dict[str, object]]], *ids: int) -> list[object]:
    by_id = {i["segment_id"]: i["median"] for i in body["items"]}
    return [by_id.get(i) for i in ids]


async def test_lagged_values_land_on_the_segment_where_they_were_sampled(
    client: httpx.AsyncClient, lagged: tuple[int, int]
) -> None:
    c, d = lagged

    response = await client.get("/api/v1/segments/stats", params={"pollutant": "no2", **DAY1_ONLY})

    assert response.status_code == 200, response.text
    # C at t = 0…5 takes the values reported at 12…17: 10; 25 (13 s is faulty: between 10 at
    # 12 s and 40 at 14 s); 40; 100; 80 (no reading at 16 s: between 100 and 60); 60 → 52.5.
    # D at 6…9 takes 18…21: 10 each (the calibration reading at 19 s is passed over, its
    # neighbours read 10); at 10…15, 22…27 falls between 21 s and 28 s, 7 s apart (> 5 s): no
    # value; at 17, 29 s is after the last reading: no value → 10.
    assert _medians(response.json(), c, d) == [52.5, 10.0]


async def test_a_vehicle_without_a_lag_for_the_pollutant_is_unchanged(
    client: httpx.AsyncClient, lagged: tuple[int, int]
) -> None:
    c, d = lagged

    response = await client.get("/api/v1/segments/stats", params={"pollutant": "no2", **DAY2_ONLY})

    # As reported: C 10; D 10 × 7 (13 s faulty), 40, 100, 60 → 27.
    assert _medians(response.json(), c, d) == [10.0, 27.0]


async def test_lagged_values_are_looked_up_past_the_window(
    client: httpx.AsyncClient, lagged: tuple[int, int]
) -> None:
    c, d = lagged
    until = (LAGGED + timedelta(seconds=6)).isoformat()

    response = await client.get(
        "/api/v1/segments/stats",
        params={"pollutant": "no2", "since": DAY1_ONLY["since"], "until": until},
    )

    # Only C's readings are in the window; their values were reported after it.
    assert _medians(response.json(), c, d) == [52.5, None]


async def test_the_lag_gap_comes_from_the_settings(
    settings: Settings, lagged: tuple[int, int]
) -> None:
    c, d = lagged
    async with api_client(settings.model_copy(update={"lag_max_gap_s": 8.0})) as wide:
        response = await wide.get(
            "/api/v1/segments/stats", params={"pollutant": "no2", **DAY1_ONLY}
        )

    # With 8 s, D at 10…15 interpolates between 10 (21 s) and 500 (28 s): 80, 150, …, 430;
    # with 10 × 4 at 6…9 → (40 + 1530) / 10 = 157.
    assert _medians(response.json(), c, d) == [52.5, 157.0]


async def test_aqi_takes_the_same_retimed_medians(
    client: httpx.AsyncClient, lagged: tuple[int, int]
) -> None:
    c, d = lagged

    response = await client.get(
        "/api/v1/segments/stats", params={"pollutant": "no2", "aqi": "hourly", **WINDOW}
    )

    assert response.status_code == 200, response.text
    items = {i["segment_id"]: i for i in response.json()["items"]}
    # Two passes each, wt-lag's and wt-plain's: C (52.5 + 10) / 2, D (10 + 27) / 2.
    assert [items[c]["median"], items[d]["median"]] == [31.25, 18.5]
    for segment in (c, d):
        [no2] = [s for s in items[segment]["aqi"]["iaqi"] if s["pollutant"] == "no2"]
        assert (no2["concentration"], no2["passes"]) == (items[segment]["median"], 2)
