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
