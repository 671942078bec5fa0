"""The road network for a map: ``GET /api/v1/segments/geometry`` (its lines, cached per
version, with ETags) and ``GET /api/v1/segments/recent`` (the statistics by columns)."""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest
from test_api_alert_map import insert_segment
from test_api_hot_segments import reading

from telemetry.roads.model import Segment
from telemetry.roads.repository import upsert_segments

PATH = "/api/v1/segments/geometry"


def segment(road_ref: str, seq: int, name: str | None, lon: float) -> Segment:
    return Segment(
        road_ref=road_ref,
        seq=seq,
        name=name,
        highway="primary",
        coords=[(lon + 0.12345678, 39.98765432), (lon + 0.2, 39.9)],
        length_m=30.0,
    )


async def import_roads(pool: asyncpg.Pool, segments: list[Segment]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await upsert_segments(conn, "city.geojson", segments)


async def test_lists_every_segment_by_columns_with_rounded_coordinates(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await import_roads(pool, [segment("a", 0, "Elm St", 116.0), segment("b", 0, None, 116.5)])
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM road_segments ORDER BY id")]

    response = await client.get(PATH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 2
    assert body["ids"] == ids
    assert body["names"] == ["Elm St", None]
    assert body["road_refs"] == ["a", "b"]
    assert body["points"] == [2, 2]
    assert body["coordinates"] == [
        *(116.123457, 39.987654, 116.2, 39.9),
        *(116.623457, 39.987654, 116.7, 39.9),
    ]
    assert response.headers["content-type"] == "application/json"


async def test_a_matching_etag_gets_304_until_the_roads_are_imported_again(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await import_roads(pool, [segment("a", 0, "Elm St", 116.0)])
    first = await client.get(PATH)
    etag = first.headers["etag"]
    assert first.headers["cache-control"].startswith("private, max-age=")

    again = await client.get(PATH, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    stale = await client.get(PATH, headers={"If-None-Match": 'W/"something-else"'})
    assert stale.status_code == 200

    # Renamed by a new import: a new version, and the new name.
    await import_roads(pool, [segment("a", 0, "Oak St", 116.0)])
    renamed = await client.get(PATH, headers={"If-None-Match": etag})
    assert renamed.status_code == 200
    assert renamed.json()["names"] == ["Oak St"]
    assert renamed.headers["etag"] != etag

    # A segment added, then the network cut back: each is a new version.
    await import_roads(pool, [segment("a", 0, "Oak St", 116.0), segment("a", 1, "Oak St", 116.2)])
    grown = await client.get(PATH, headers={"If-None-Match": renamed.headers["etag"]})
    assert grown.json()["count"] == 2
    await import_roads(pool, [segment("a", 0, "Oak St", 116.0)])
    cut = await client.get(PATH, headers={"If-None-Match": grown.headers["etag"]})
    assert cut.json()["count"] == 1
    assert len({etag, renamed.headers["etag"], grown.headers["etag"], cut.headers["etag"]}) == 4


async def test_gzipped_for_a_client_that_accepts_it(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await import_roads(pool, [segment("a", i, "Elm St", 116.0 + i / 10) for i in range(50)])
    plain = await client.get(PATH, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    gzipped = await client.get(PATH, headers={"Accept-Encoding": "gzip"})
    assert gzipped.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in gzipped.headers["vary"]
    assert int(gzipped.headers["content-length"]) < int(plain.headers["content-length"])
    assert gzipped.json() == json.loads(plain.content) != {}
    assert gzipped.json()["count"] == 50


async def test_an_empty_network_is_an_empty_listing(client: httpx.AsyncClient) -> None:
    body = (await client.get(PATH)).json()
    assert (body["count"], body["ids"], body["points"], body["coordinates"]) == (0, [], [], [])


async def test_a_viewer_may_read_it_and_an_anonymous_caller_may_not(
    viewer_client: httpx.AsyncClient, anonymous_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await import_roads(pool, [segment("a", 0, "Elm St", 116.0)])
    assert (await viewer_client.get(PATH)).json()["names"] == ["Elm St"]
    response = await anonymous_client.get(PATH)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


async def test_recent_statistics_of_the_segments_with_readings_by_id(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    quiet = await insert_segment(pool, [[116.0, 39.0], [116.001, 39.001]], "Quiet St", "a")
    busy = await insert_segment(pool, [[116.01, 39.01], [116.011, 39.011]], "Busy Rd", "b")
    once = await insert_segment(pool, [[116.02, 39.02], [116.021, 39.021]], None, "c")
    for value in (100, 200):
        await reading(pool, busy, value)
    await reading(pool, once, 40)
    await reading(pool, quiet, 900, flag="D")  # not valid
    await reading(pool, quiet, 900, ago_min=300)  # outside the window

    response = await client.get("/api/v1/segments/recent", params={"minutes": 60})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["pollutant"], body["count"]) == ("pm25", 2)
    assert body["ids"] == sorted([busy, once])
    columns = zip(body["readings"], body["means"], body["maxes"], strict=True)
    by_id = dict(zip(body["ids"], columns, strict=True))
    assert by_id[busy] == (2, pytest.approx(150), pytest.approx(200))
    assert by_id[once] == (1, 40, 40)

    # The same figures as the listing, which ranks them with the segments' fields.
    listing = (await client.get("/api/v1/segments", params={"min_readings": 1})).json()
    assert {s["id"]: s["mean"] for s in listing["items"]} == dict(
        zip(body["ids"], body["means"], strict=True)
    )
    twice = (await client.get("/api/v1/segments/recent", params={"min_readings": 2})).json()
    assert twice["ids"] == [busy]
    wider = (await client.get("/api/v1/segments/recent", params={"minutes": 600})).json()
    assert quiet in wider["ids"]
    no2 = (await client.get("/api/v1/segments/recent", params={"pollutant": "no2"})).json()
    assert no2["means"] == [10, 10]


@pytest.mark.parametrize("params", [{"min_readings": 0}, {"minutes": 0}, {"pollutant": "lead"}])
async def test_recent_statistics_reject_a_bad_query(
    client: httpx.AsyncClient, params: dict[str, object]
) -> None:
    response = await client.get("/api/v1/segments/recent", params=params)
    assert response.status_code == 422, response.text
