"""The vehicles API against a real database: last known state, online flag and GeoJSON tracks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from telemetry.kinds.walkthrough.schemas import Track
from telemetry.settings import Settings

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, ingest_enabled=False, vehicle_online_s=60)


async def insert_vehicle(
    pool: asyncpg.Pool, vehicle_id: str, *, kind: str = "walkthrough", silent_s: float = 0
) -> None:
    """A vehicle last heard from ``silent_s`` seconds ago (by the database clock)."""
    await pool.execute(
        "INSERT INTO vehicles (vehicle_id, kind, last_ts, last_lat, last_lon, last_received_at,"
        " readings) VALUES ($1, $2, now() - make_interval(secs => $3), 24.48, 118.09,"
        " now() - make_interval(secs => $3), 10)",
        vehicle_id,
        kind,
        float(silent_s),
    )


async def insert_readings(pool: asyncpg.Pool, vehicle_id: str, rows: list[dict[str, Any]]) -> None:
    await pool.executemany(
        "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, pm25, no2,"
        " segment_id, flag) VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8)",
        [
            (
                vehicle_id,
                r["ts"],
                r["lat"],
                r["lon"],
                r.get("pm25"),
                r.get("no2"),
                r.get("segment_id"),
                r.get("flag", "N"),
            )
            for r in rows
        ],
    )


async def test_list_marks_vehicles_heard_from_recently_online(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await insert_vehicle(pool, "wt-01")
    await insert_vehicle(pool, "wt-02", silent_s=600)
    await insert_vehicle(pool, "em-01", kind="emergency", silent_s=5)

    body = (await client.get("/api/v1/vehicles")).json()

    assert [(v["vehicle_id"], v["online"]) for v in body["items"]] == [
        ("em-01", True),
        ("wt-01", True),
        ("wt-02", False),
    ]
    first = body["items"][0]
    assert (first["kind"], first["last_lat"], first["last_lon"], first["readings"]) == (
        "emergency",
        24.48,
        118.09,
        10,
    )
    assert body["next_after"] is None


async def test_list_filters_by_kind_and_online(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await insert_vehicle(pool, "wt-01")
    await insert_vehicle(pool, "wt-02", silent_s=600)
    await insert_vehicle(pool, "em-01", kind="emergency")

    async def listed(params: dict[str, Any]) -> list[str]:
        response = await client.get("/api/v1/vehicles", params=params)
        assert response.status_code == 200, response.text
        return [v["vehicle_id"] for v in response.json()["items"]]

    assert await listed({"kind": "walkthrough"}) == ["wt-01", "wt-02"]
    assert await listed({"online": "true"}) == ["em-01", "wt-01"]
    assert await listed({"online": "false"}) == ["wt-02"]
    assert await listed({"kind": "walkthrough", "online": "true"}) == ["wt-01"]


async def test_list_pages_by_vehicle_id(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    for n in range(5):
        await insert_vehicle(pool, f"wt-{n:02d}")

    first = (await client.get("/api/v1/vehicles", params={"limit": 3})).json()
    rest = (
        await client.get("/api/v1/vehicles", params={"limit": 3, "after": first["next_after"]})
    ).json()

    assert [v["vehicle_id"] for v in first["items"] + rest["items"]] == [
        f"wt-{n:02d}" for n in range(5)
    ]
    assert rest["next_after"] is None


async def test_track_is_a_path_and_a_point_per_reading_in_time_order(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await insert_vehicle(pool, "wt-01")
    s = timedelta(seconds=1)
    # Inserted out of order; one reading before and one at the end of the window are excluded.
    await insert_readings(
        pool,
        "wt-01",
        [
            {"ts": T0 + 2 * s, "lat": 24.002, "lon": 118.002, "pm25": 40.5, "segment_id": 7},
            {"ts": T0, "lat": 24.000, "lon": 118.000, "pm25": 38.25, "no2": 41.0, "segment_id": 7},
            {"ts": T0 + s, "lat": 24.001, "lon": 118.001, "segment_id": None, "flag": "T"},
            {"ts": T0 - s, "lat": 23.999, "lon": 117.999, "pm25": 1.0},
            {"ts": T0 + 3 * s, "lat": 24.003, "lon": 118.003, "pm25": 2.0},
        ],
    )

    response = await client.get(
        "/api/v1/vehicles/wt-01/track",
        params={"since": T0.isoformat(), "until": (T0 + 3 * s).isoformat()},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    body = response.json()
    Track.model_validate(body)
    assert body["type"] == "FeatureCollection"
    path, *points = body["features"]
    assert path["geometry"] == {
        "type": "LineString",
        "coordinates": [[118.0, 24.0], [118.001, 24.001], [118.002, 24.002]],
    }
    assert path["properties"]["vehicle_id"] == "wt-01"
    assert path["properties"]["points"] == 3
    assert [p["geometry"]["coordinates"] for p in points] == path["geometry"]["coordinates"]
    assert [p["properties"]["ts"] for p in points] == [
        "2025-06-01T08:00:00.000000Z",
        "2025-06-01T08:00:01.000000Z",
        "2025-06-01T08:00:02.000000Z",
    ]
    first, second, third = (p["properties"] for p in points)
    assert (first["segment_id"], first["pm25"], first["no2"], first["co"]) == (7, 38.25, 41.0, None)
    assert (second["segment_id"], second["flag"], second["pm25"]) == (None, "T", None)
    assert third["pm25"] == 40.5


async def test_track_defaults_to_the_last_hour(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await insert_vehicle(pool, "wt-01")
    now = datetime.now(UTC)
    await insert_readings(
        pool,
        "wt-01",
        [
            {"ts": now - timedelta(minutes=90), "lat": 24.0, "lon": 118.0},
            {"ts": now - timedelta(minutes=30), "lat": 24.1, "lon": 118.1},
            {"ts": now - timedelta(minutes=20), "lat": 24.2, "lon": 118.2},
        ],
    )

    body = (await client.get("/api/v1/vehicles/wt-01/track")).json()

    assert body["features"][0]["geometry"]["coordinates"] == [[118.1, 24.1], [118.2, 24.2]]
    assert len(body["features"]) == 3


async def test_single_reading_has_no_path(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await insert_vehicle(pool, "wt-01")
    await insert_readings(pool, "wt-01", [{"ts": T0, "lat": 24.0, "lon": 118.0}])

    body = (
        await client.get("/api/v1/vehicles/wt-01/track", params={"since": T0.isoformat()})
    ).json()

    assert [f["geometry"]["type"] for f in body["features"]] == ["Point"]


async def test_known_vehicle_without_readings_in_window_has_empty_track(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await insert_vehicle(pool, "em-01", kind="emergency")

    response = await client.get("/api/v1/vehicles/em-01/track")

    assert response.status_code == 200
    assert response.json() == {"type": "FeatureCollection", "features": []}


async def test_track_of_unknown_vehicle_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/vehicles/ghost/track")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2025-06-01T00:00:00Z", "until": "2025-06-02T00:00:01Z"},
        {"since": "2025-06-01T00:00:00Z", "until": "2025-06-01T00:00:00Z"},
        {"until": "2025-06-01T00:00:00"},
    ],
)
async def test_track_window_beyond_24_hours_or_reversed_is_422(
    client: httpx.AsyncClient, pool: asyncpg.Pool, params: dict[str, str]
) -> None:
    await insert_vehicle(pool, "wt-01")

    response = await client.get("/api/v1/vehicles/wt-01/track", params=params)

    assert response.status_code == 422


async def test_track_window_of_exactly_24_hours_is_accepted(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await insert_vehicle(pool, "wt-01")
    params = {"since": "2025-06-01T00:00:00Z", "until": "2025-06-02T00:00:00Z"}

    response = await client.get("/api/v1/vehicles/wt-01/track", params=params)

    assert response.status_code == 200
