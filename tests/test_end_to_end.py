"""End to end through the real broker, PostgreSQL and the HTTP API: a client we did not write
(mosquitto_pub) publishes a plume on a known segment and a set of broken payloads; the alert
appears over HTTP, the broken ones are in the dead-letter table, and the service stays up."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import bearer, eventually, grant_token, publish

from api.app import create_app
from telemetry.roads.importer import import_roads
from telemetry.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def service(
    database_url: str, broker: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"e2e-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        max_payload_bytes=4096,
        # The plume's pass is judged once its vehicle has been quiet this long.
        pass_max_gap_s=2,
    )
    await import_roads(settings, ROOT / "data/roads/demo.geojson", segment_length_m=30)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = bearer(await grant_token(database_url))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            await eventually(lambda: _healthy(client))
            yield client, settings


async def _healthy(client: httpx.AsyncClient) -> bool:
    return (await client.get("/healthz")).status_code == 200


def _points_along(coords: list[list[float]], n: int) -> list[tuple[float, float]]:
    (x0, y0), (x1, y1) = coords[0], coords[-1]
    return [(x0 + (x1 - x0) * (i + 0.5) / n, y0 + (y1 - y0) * (i + 0.5) / n) for i in range(n)]


async def test_plume_on_known_segment_raises_alert_and_broken_payloads_are_dead_lettered(
    service: tuple[httpx.AsyncClient, Settings], broker: Any, database_url: str
) -> None:
    client, _ = service
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        seg = await conn.fetchrow(
            "SELECT id, coords::text AS coords FROM road_segments ORDER BY length_m DESC LIMIT 1"
        )
    finally:
        await conn.close()
    segment_id, coords = seg["id"], json.loads(seg["coords"])

    now_ms = time.time_ns() // 1_000_000
    plume = [
        {"ts": now_ms - (6 - i) * 1000, "lat": lat, "lon": lon, "pm25": 180.0 + i, "pm10": 90.0}
        for i, (lon, lat) in enumerate(_points_along(coords, 6))
    ]
    # One vehicle sends its readings one by one, another flushes a buffered burst as an array.
    publish(broker, "telemetry/walkthrough/car-e2e-1", [json.dumps(r) for r in plume[:3]])
    publish(broker, "telemetry/walkthrough/car-e2e-1", [json.dumps(plume[3:])])

    broken = {
        "malformed_json": ("telemetry/walkthrough/car-bad", "{this is not json"),
        "unknown_kind": ("telemetry/submarine/car-bad", json.dumps(plume[0])),
        "bad_coordinates": (
            "telemetry/walkthrough/car-bad",
            json.dumps({**plume[0], "lat": 0, "lon": 0}),
        ),
        "clock_future": (
            "telemetry/walkthrough/car-bad",
            json.dumps({**plume[0], "ts": now_ms + 86_400_000}),
        ),
        "schema": ("telemetry/walkthrough/car-bad", json.dumps({**plume[0], "pm25": "lots"})),
        "oversized": ("telemetry/walkthrough/car-bad", json.dumps([plume[0]] * 60)),
        "bad_topic": ("telemetry/walkthrough/car-bad/extra", json.dumps(plume[0])),
    }
    for topic, payload in broken.values():
        publish(broker, topic, [payload])

    async def alert() -> dict[str, Any] | None:
        r = await client.get("/api/v1/alerts", params={"segment": segment_id, "pollutant": "pm25"})
        items = [a for a in r.json()["items"] if a["rule"] == "pass_screening"]
        return items[0] if items else None

    found = await eventually(alert)
    assert found["status"] == "open"
    assert found["kind"] == "walkthrough"
    assert found["limit_value"] == 60.0
    assert "GB 3095-2026" in found["source"]
    assert found["vehicles"] == ["car-e2e-1"]
    # Pass mean ≥ 180 against 60: C/S ≥ 3, an indicator; a 6 s pass is no valid 24 h average,
    # so no exceedance multiple is claimed.
    assert found["rules"] == ["reference_ratio"]
    assert found["peak_ratio"] > 2.9
    assert found["peak_multiple"] is None
    assert found["severity"] == "critical"
    assert found["confidence"] == "suspected"
    assert segment_id in found["segments"]

    async def dead_reasons() -> set[str] | None:
        r = await client.get("/api/v1/dead-letters", params={"limit": 100})
        reasons = {d["reason"] for d in r.json()["items"]}
        return reasons if reasons >= set(broken) else None

    reasons = await eventually(dead_reasons)
    assert reasons == set(broken)

    readings = await client.get("/api/v1/vehicles")
    [vehicle] = [v for v in readings.json()["items"] if v["vehicle_id"] == "car-e2e-1"]
    assert vehicle["readings"] == 6
    assert vehicle["online"] is True

    health = await client.get("/healthz")
    assert health.status_code == 200

    # The officer acknowledges, then resolves, over HTTP.
    ack = await client.post(
        f"/api/v1/alerts/{found['id']}/ack", json={"by": "duty-officer", "note": "crew sent"}
    )
    assert ack.json()["status"] == "acknowledged"
    done = await client.post(f"/api/v1/alerts/{found['id']}/resolve", json={"by": "duty-officer"})
    assert done.json()["status"] == "resolved"


async def test_redelivered_messages_change_nothing(
    service: tuple[httpx.AsyncClient, Settings], broker: Any, database_url: str
) -> None:
    client, _ = service
    now_ms = time.time_ns() // 1_000_000
    reading = json.dumps({"ts": now_ms, "lat": 39.99, "lon": 116.31, "pm25": 20})
    publish(broker, "telemetry/walkthrough/car-dup", [reading, reading, reading])

    async def vehicle() -> dict[str, Any] | None:
        r = await client.get("/api/v1/vehicles")
        items = [v for v in r.json()["items"] if v["vehicle_id"] == "car-dup"]
        return items[0] if items else None

    await eventually(vehicle)
    metrics = await eventually(lambda: _metric_at_least(client, 'outcome="duplicate"', 2))
    assert metrics
    row = await vehicle()
    assert row is not None
    assert row["readings"] == 1


async def _metric_at_least(client: httpx.AsyncClient, label: str, value: float) -> bool:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if (
            line.startswith("telemetry_readings_total")
            and label in line
            and 'kind="walkthrough"' in line
        ):
            return float(line.rsplit(" ", 1)[1]) >= value
    return False


async def test_message_with_mqtt5_properties_is_stored_too(
    service: tuple[httpx.AsyncClient, Settings], broker: Any
) -> None:
    """Properties (here a user property the broker forwards) take gmqtt's own parser rather
    than the ingest fast path; the reading is stored and acknowledged all the same."""
    client, _ = service
    reading = json.dumps({"ts": time.time_ns() // 1_000_000, "lat": 39.99, "lon": 116.31})
    options = ("-V", "mqttv5", "-D", "publish", "user-property", "crew", "b-shift")
    publish(broker, "telemetry/walkthrough/car-props", [reading], options=options)

    async def vehicle() -> bool:
        r = await client.get("/api/v1/vehicles")
        return any(v["vehicle_id"] == "car-props" for v in r.json()["items"])

    assert await eventually(vehicle)
