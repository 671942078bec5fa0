"""Health, metrics, segments, thresholds, dead letters and the OpenAPI document."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from conftest import Broker, free_port
from prometheus_client import CONTENT_TYPE_LATEST
from support import api_client

from telemetry.settings import Settings

serve = api_client


def missing_database(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path=f"/absent_{uuid.uuid4().hex[:8]}"))


async def wait_for_health(client: httpx.AsyncClient, status: int) -> httpx.Response:
    """Poll /healthz until it answers ``status``, for at most ten seconds."""
    for _ in range(200):
        response = await client.get("/healthz")
        if response.status_code == status:
            return response
        await asyncio.sleep(0.05)
    return response


# --- /healthz ------------------------------------------------------------------------------


async def test_healthz_is_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": {"status": "ok", "detail": None}},
        "oldest_unacked_age_s": None,
    }


async def test_app_starts_without_its_database_and_healthz_says_why(database_url: str) -> None:
    settings = Settings(database_url=missing_database(database_url), ingest_enabled=False)

    async with serve(settings) as client:
        health = await client.get("/healthz")
        alerts = await client.get("/api/v1/alerts")

    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "failed"
    assert "does not exist" in body["checks"]["database"]["detail"]
    assert alerts.status_code == 503
    assert alerts.json()["error"] == "unavailable"


async def test_app_reaches_a_database_that_appears_after_start(database_url: str) -> None:
    late_url = missing_database(database_url)
    late_name = urlsplit(late_url).path.lstrip("/")
    settings = Settings(database_url=late_url, ingest_enabled=False)
    admin = await asyncpg.connect(database_url)
    try:
        async with serve(settings) as client:
            before = await client.get("/healthz")
            await admin.execute(f'CREATE DATABASE "{late_name}"')
            after = await wait_for_health(client, 200)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{late_name}" WITH (FORCE)')
        await admin.close()

    assert before.status_code == 503
    assert after.status_code == 200


async def test_healthz_names_the_ingest_worker_that_could_not_start(database_url: str) -> None:
    settings = Settings(database_url=missing_database(database_url), ingest_enabled=True)

    async with serve(settings) as client:
        body = (await client.get("/healthz")).json()

    assert set(body["checks"]) == {"database", "mqtt"}
    assert body["checks"]["mqtt"]["status"] == "failed"
    assert "not started" in body["checks"]["mqtt"]["detail"]


async def test_healthz_fails_while_the_worker_cannot_reach_the_broker(database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        mqtt_client_id=f"api-test-{uuid.uuid4().hex[:8]}",
    )

    async with serve(settings) as client:
        response = await client.get("/healthz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["mqtt"] == {
        "status": "failed",
        "detail": "ingest worker is not connected to the broker",
    }


async def test_healthz_is_ok_once_the_worker_is_connected(
    database_url: str, broker: Broker
) -> None:
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"api-test-{uuid.uuid4().hex[:8]}",
        mqtt_session_expiry_s=0,
    )

    async with serve(settings) as client:
        response = await wait_for_health(client, 200)

    assert response.status_code == 200
    assert response.json()["checks"]["mqtt"] == {"status": "ok", "detail": None}


# --- /metrics ------------------------------------------------------------------------------


async def test_metrics_expose_the_default_registry(client: httpx.AsyncClient) -> None:
    import telemetry.metrics  # noqa: F401  (registers the ingest metrics)

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "# TYPE python_info gauge" in response.text
    assert "telemetry_messages_total" in response.text


# --- segments ------------------------------------------------------------------------------


async def test_segment_has_geometry_and_recent_hourly_statistics(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    coords = [[118.0, 24.0], [118.0003, 24.0]]
    segment_id = await pool.fetchval(
        "INSERT INTO road_segments (source, road_ref, seq, name, highway, length_m, coords,"
        " min_lon, min_lat, max_lon, max_lat)"
        " VALUES ('test', 'way/1', 0, 'Hubin Road', 'primary', 30.4, $1,"
        " 118.0, 24.0, 118.0003, 24.0)"
        " RETURNING id",
        coords,
    )
    recent = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(hours=1)
    old = recent - timedelta(hours=48)
    await pool.executemany(
        "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, pm25, segment_id)"
        " VALUES ('wt-01', $1, $1, 24.0, 118.0001, $2, $3)",
        [
            (recent, 30.0, segment_id),
            (recent + timedelta(seconds=1), 50.0, segment_id),
            (old, 9.0, segment_id),
        ],
    )

    response = await client.get(f"/api/v1/segments/{segment_id}", params={"hours": 24})

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["name"], body["highway"]) == (segment_id, "Hubin Road", "primary")
    assert body["geometry"] == {"type": "LineString", "coordinates": coords}
    assert len(body["hourly"]) == 1
    hour = body["hourly"][0]
    assert (hour["readings"], hour["pm25_avg"], hour["pm25_max"], hour["no2_avg"]) == (
        2,
        40.0,
        50.0,
        None,
    )


async def test_unknown_segment_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/segments/424242")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "segment 424242 does not exist"}


# --- thresholds ----------------------------------------------------------------------------


async def test_thresholds_list_filters_by_kind(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    seeded = await pool.fetchval("SELECT count(*) FROM thresholds WHERE kind = 'walkthrough'")

    walkthrough = (await client.get("/api/v1/thresholds", params={"kind": "walkthrough"})).json()
    emergency = (await client.get("/api/v1/thresholds", params={"kind": "emergency"})).json()

    assert len(walkthrough) == seeded
    assert {t["kind"] for t in walkthrough} == {"walkthrough"}
    assert emergency == []


async def test_operator_adds_a_threshold_and_an_overlapping_one_is_409(
    client: httpx.AsyncClient,
) -> None:
    new: dict[str, Any] = {
        "kind": "emergency",
        "pollutant": "h2s",
        "limit_value": 10,
        "unit": "mg/m3",
        "averaging": "instant",
        "source": "local emergency plan",
        "effective_from": "2025-01-01",
        "effective_to": "2026-01-01",
    }

    created = await client.post("/api/v1/thresholds", json=new)
    overlapping = await client.post(
        "/api/v1/thresholds", json=new | {"effective_from": "2025-06-01"}
    )
    listed = (await client.get("/api/v1/thresholds", params={"kind": "emergency"})).json()

    assert created.status_code == 201
    body = created.json()
    assert (body["pollutant"], body["limit_value"], body["tier"], body["effective_to"]) == (
        "h2s",
        10.0,
        "limit",
        "2026-01-01",
    )
    assert overlapping.status_code == 409
    assert overlapping.json()["error"] == "conflict"
    assert [t["id"] for t in listed] == [body["id"]]


@pytest.mark.parametrize(
    "change",
    [
        {"limit_value": 0},
        {"effective_to": "2024-12-31"},
        {"kind": "bicycle"},
        {"source": ""},
    ],
)
async def test_invalid_threshold_is_422(client: httpx.AsyncClient, change: dict[str, Any]) -> None:
    new = {
        "kind": "emergency",
        "pollutant": "nh3",
        "limit_value": 1.5,
        "unit": "mg/m3",
        "averaging": "1h",
        "source": "x",
        "effective_from": "2025-01-01",
    } | change

    response = await client.post("/api/v1/thresholds", json=new)

    assert response.status_code == 422


# --- dead letters --------------------------------------------------------------------------


async def test_dead_letters_filter_and_page_newest_first(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    ids = [
        await pool.fetchval(
            "INSERT INTO dead_letters"
            " (received_at, topic, kind, vehicle_id, reason, detail, payload)"
            " VALUES ($1, 'telemetry/walkthrough/wt-01', 'walkthrough', 'wt-01', $2, 'bad', $3)"
            " RETURNING id",
            now,
            reason,
            payload,
        )
        for reason, payload in [
            ("malformed_json", b"{not json"),
            ("schema", b'{"ts": 1}'),
            ("malformed_json", b"\xff\xfe"),
            ("malformed_json", b"["),
        ]
    ]

    first = (
        await client.get("/api/v1/dead-letters", params={"reason": "malformed_json", "limit": 2})
    ).json()
    rest = (
        await client.get(
            "/api/v1/dead-letters",
            params={"reason": "malformed_json", "limit": 2, "before_id": first["next_before_id"]},
        )
    ).json()

    assert [d["id"] for d in first["items"]] == [ids[3], ids[2]]
    assert [d["id"] for d in rest["items"]] == [ids[0]]
    assert rest["next_before_id"] is None
    assert first["items"][0]["payload"] == "["
    assert rest["items"][0]["topic"] == "telemetry/walkthrough/wt-01"


async def test_dead_letter_limit_is_bounded(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/dead-letters", params={"limit": 100_000})

    assert response.status_code == 422


# --- OpenAPI -------------------------------------------------------------------------------


async def test_openapi_document_lists_every_route(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    assert set(paths) >= {
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}",
        "/api/v1/alerts/{alert_id}/ack",
        "/api/v1/alerts/{alert_id}/resolve",
        "/api/v1/vehicles",
        "/api/v1/vehicles/{vehicle_id}/track",
        "/api/v1/segments/{segment_id}",
        "/api/v1/thresholds",
        "/api/v1/dead-letters",
        "/healthz",
        "/metrics",
    }
    assert (await client.get("/docs")).status_code == 200
