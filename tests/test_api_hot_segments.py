"""``GET /api/v1/segments``: the hot streets, ranked by a pollutant's recent mean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from test_api_alert_map import insert_segment


async def reading(
    pool: asyncpg.Pool, segment_id: int, pm25: float, *, ago_min: float = 5, flag: str = "N"
) -> None:
    ts = datetime.now(UTC) - timedelta(minutes=ago_min)
    await pool.execute(
        "INSERT INTO walkthrough_readings"
        " (vehicle_id, ts, received_at, lat, lon, pm25, no2, flag, segment_id)"
        " VALUES ('wt-01', $1, $1, 39.0, 116.0, $2, 10, $3, $4)",
        ts,
        pm25,
        flag,
        segment_id,
    )


async def listing(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/segments", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_hot_streets_first_with_valid_recent_readings_only(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    cool = await insert_segment(pool, [[116.0, 39.0], [116.001, 39.001]], "Cool St", "a")
    hot = await insert_segment(pool, [[116.01, 39.01], [116.011, 39.011]], "Hot Rd", "b")
    empty = await insert_segment(pool, [[116.02, 39.02], [116.021, 39.021]], None, "c")
    for value in (20, 40):
        await reading(pool, cool, value)
    for value in (100, 200):
        await reading(pool, hot, value)
    await reading(pool, cool, 900, flag="D")  # not valid
    await reading(pool, cool, 900, ago_min=300)  # outside the window

    body = await listing(client, pollutant="pm25", minutes=60)
    assert [s["id"] for s in body["items"]] == [hot, cool, empty]
    first, second, third = body["items"]
    assert (first["name"], first["road_ref"], first["readings"]) == ("Hot Rd", "b", 2)
    assert (first["mean"], first["max"]) == (pytest.approx(150), pytest.approx(200))
    assert (second["readings"], second["mean"], second["max"]) == (2, 30, 40)
    assert (third["readings"], third["mean"], third["max"]) == (0, None, None)
    assert first["geometry"]["type"] == "LineString"
    assert first["length_m"] == 100
    assert body["next_cursor"] is None

    active = await listing(client, min_readings=1)
    assert [s["id"] for s in active["items"]] == [hot, cool]
    wider = await listing(client, minutes=600)
    assert wider["items"][0]["id"] == cool  # the old 900 now counts
    no2 = await listing(client, pollutant="no2", min_readings=1)
    assert {s["id"]: s["mean"] for s in no2["items"]} == {hot: 10, cool: 10}


async def test_bbox_selects_intersecting_segments(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    inside = await insert_segment(pool, [[116.0, 39.0], [116.1, 39.1]], "In", "a")
    crossing = await insert_segment(pool, [[116.4, 39.4], [116.6, 39.6]], "Across", "b")
    await insert_segment(pool, [[117.0, 40.0], [117.1, 40.1]], "Out", "c")

    body = await listing(client, bbox="115.9,38.9,116.5,39.5")
    assert sorted(s["id"] for s in body["items"]) == [inside, crossing]


@pytest.mark.parametrize(
    "bbox",
    ["1,2,3", "a,b,c,d", "116,39,115,40", "100,30,110,40", "-181,0,-179,1", "nan,0,1,1"],
)
async def test_bad_or_too_wide_bbox_is_422(client: httpx.AsyncClient, bbox: str) -> None:
    response = await client.get("/api/v1/segments", params={"bbox": bbox})
    assert response.status_code == 422, response.text


async def test_pages_cover_every_segment_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    made = [
        await insert_segment(pool, [[116.0 + i / 100, 39.0], [116.001 + i / 100, 39.0]], None, "p")
        for i in range(5)
    ]
    for n, segment in enumerate(made):
        await reading(pool, segment, 10.0 * n)

    seen: list[int] = []
    cursor: str | None = None
    while True:
        body = await listing(client, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [s["id"] for s in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_listing_needs_a_token(anonymous_client: httpx.AsyncClient) -> None:
    response = await anonymous_client.get("/api/v1/segments")
    assert response.status_code == 401


async def test_pages_of_segments_with_readings_hold_them_all_hottest_first(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    made = [
        await insert_segment(pool, [[116.0 + i / 100, 39.0], [116.001 + i / 100, 39.0]], None, "q")
        for i in range(6)
    ]
    for n, segment in enumerate(made[:5]):
        for _ in range(1 + n % 2):
            await reading(pool, segment, 10.0 * n)

    seen: list[int] = []
    cursor: str | None = None
    while True:
        params = {"cursor": cursor} if cursor else {}
        body = await listing(client, limit=2, min_readings=1, **params)
        seen += [s["id"] for s in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made[:5]))  # made[5] has no readings
    twice = await listing(client, min_readings=2)
    assert [(s["id"], s["readings"]) for s in twice["items"]] == [(made[3], 2), (made[1], 2)]
