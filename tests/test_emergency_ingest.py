"""Emergency readings through the real broker, ingest worker, PostgreSQL and the HTTP API:
tiered alerts inside an open incident (and none outside it), escalation to a higher tier,
dead letters for broken records, and redelivery that changes nothing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, eventually, grant_token

from api.app import create_app
from simulators.publisher import Publisher
from telemetry.geo import destination
from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.emergency.pipeline import EmergencyPipeline
from telemetry.kinds.emergency.service import open_incident
from telemetry.kinds.walkthrough.pipeline import WalkthroughPipeline
from telemetry.settings import Settings
from telemetry.store.audit import Actor

SOURCE = (39.99, 116.31)  # lat, lon of the release


def at(distance_m: float, bearing_deg: float) -> dict[str, float]:
    lat, lon = destination(SOURCE[0], SOURCE[1], bearing_deg, distance_m)
    return {"lat": round(float(lat), 7), "lon": round(float(lon), 7)}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def service(
    database_url: str, pool: asyncpg.Pool, broker: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Publisher]]:
    """An ingest worker with the walk-through and emergency pipelines, an API client and a
    publisher, with the worker's subscription in place."""
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"em-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        ingest_enabled=False,
    )
    worker = IngestWorker(
        settings, pool, pipelines=[WalkthroughPipeline(settings), EmergencyPipeline(settings)]
    )
    await worker.start()
    app = create_app(settings)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://api",
                headers=bearer(await grant_token(database_url)),
            ) as client,
            Publisher(settings.mqtt, f"pub-{uuid.uuid4().hex[:8]}") as publisher,
        ):
            probe = f"probe-{uuid.uuid4().hex[:6]}"

            async def subscribed() -> bool:
                # Clean air far from any incident, until the worker stores one.
                record = {
                    "ts": now_ms(),
                    **at(50_000, 0),
                    "gases": {"co": {"value": 0.5, "unit": "ppm"}},
                }
                await send(publisher, probe, record)
                await asyncio.sleep(0.2)
                return bool(
                    await pool.fetchval(
                        "SELECT count(*) FROM vehicles WHERE vehicle_id = $1", probe
                    )
                )

            await eventually(subscribed)
            yield client, publisher
    finally:
        await worker.stop()


async def send(publisher: Publisher, vehicle_id: str, *payloads: Any) -> None:
    """Publish each payload (a record, a list of records, or raw bytes) as one QoS 1 message."""
    topic = f"telemetry/emergency/{vehicle_id}".encode()
    messages = [(topic, p if isinstance(p, bytes) else json.dumps(p).encode()) for p in payloads]
    await publisher.publish(messages)
    assert await publisher.drain(timeout_s=10)


async def incident_alerts(client: httpx.AsyncClient, incident_id: int) -> dict[str, dict]:
    response = await client.get("/api/v1/alerts", params={"kind": "emergency", "limit": 100})
    assert response.status_code == 200
    return {
        a["rule"]: a for a in response.json()["items"] if a["subject"] == f"incident:{incident_id}"
    }


async def test_tiered_alerts_escalate_inside_an_open_incident_and_not_outside_it(
    service: tuple[httpx.AsyncClient, Publisher], pool: asyncpg.Pool
) -> None:
    client, publisher = service
    incident = await open_incident(
        pool,
        name="tank farm leak",
        lat=SOURCE[0],
        lon=SOURCE[1],
        started_at=datetime.now(UTC) - timedelta(minutes=10),
        suspected_substances=["h2s"],
        by=Actor(None, "duty-officer"),
    )
    t0 = now_ms() - 60_000
    # 12 ppm H2S at 1 km east: over the NIOSH REL ceiling (10 ppm), under ERPG-2 (30 ppm).
    first = {
        "ts": t0,
        **at(1000, 90),
        "wind_speed_ms": 2.5,
        "wind_dir_deg": 270,
        "gases": {
            "H2S": {"value": 12, "unit": "ppm", "sensor": "EC"},
            "VOC": {"value": 3.2, "unit": "ppm", "sensor": "PID"},
        },
    }
    far_away = {"ts": t0, **at(8000, 90), "gases": {"h2s": {"value": 500, "unit": "ppm"}}}
    await send(publisher, "em-1", first)
    await send(publisher, "em-far", far_away)

    alerts = await eventually(lambda: incident_alerts(client, incident["id"]))
    assert set(alerts) == {"tier:rel"}
    rel = alerts["tier:rel"]
    assert (rel["kind"], rel["pollutant"], rel["severity"], rel["status"]) == (
        "emergency",
        "h2s",
        "info",
        "open",
    )
    assert rel["limit_value"] == 10.0 and rel["unit"] == "ppm"
    assert rel["peak_multiple"] == pytest.approx(0.2)  # (12 - 10) / 10
    assert rel["details"]["distance_m"] == pytest.approx(1000, abs=1)
    assert rel["details"]["bearing_deg"] == pytest.approx(90, abs=0.1)
    assert "NIOSH" in rel["source"]

    # The vehicle drives closer: 45 ppm is over ERPG-2, a new episode of a higher tier.
    await send(
        publisher,
        "em-1",
        {"ts": t0 + 1000, **at(400, 80), "gases": {"h2s": {"value": 45, "unit": "ppm"}}},
    )

    async def escalated() -> dict[str, dict] | None:
        found = await incident_alerts(client, incident["id"])
        return found if "tier:erpg2" in found else None

    alerts = await eventually(escalated)
    erpg2 = alerts["tier:erpg2"]
    assert erpg2["severity"] == "warning"
    assert erpg2["peak_multiple"] == pytest.approx(0.5)  # (45 - 30) / 30
    assert alerts["tier:rel"]["occurrences"] == 1
    assert alerts["tier:rel"]["status"] == "open"

    rows = await pool.fetch(
        "SELECT vehicle_id, substance, value, unit, value_ppm, value_mgm3, conversion, sensor,"
        " incident_id FROM emergency_readings ORDER BY vehicle_id, ts, substance"
    )
    by_key = {(r["vehicle_id"], r["substance"], r["value"]): r for r in rows}
    h2s = by_key[("em-1", "h2s", 12.0)]
    assert h2s["incident_id"] == incident["id"]
    assert h2s["value_mgm3"] == pytest.approx(12 * 34.08 / 24.45)
    assert h2s["sensor"] == "EC"
    voc = by_key[("em-1", "voc", 3.2)]
    assert voc["value_ppm"] == 3.2 and voc["value_mgm3"] is None
    assert "isobutylene" in voc["conversion"]
    far = by_key[("em-far", "h2s", 500.0)]
    assert far["incident_id"] is None  # stored, but raises no incident alert
    kinds = await pool.fetch(
        "SELECT vehicle_id, kind, readings FROM vehicles WHERE vehicle_id LIKE 'em-%' "
        "ORDER BY vehicle_id"
    )
    assert [tuple(k) for k in kinds] == [("em-1", "emergency", 2), ("em-far", "emergency", 1)]


async def test_broken_emergency_records_are_dead_lettered_with_their_reason(
    service: tuple[httpx.AsyncClient, Publisher], pool: asyncpg.Pool
) -> None:
    _, publisher = service
    good = {"ts": now_ms(), **at(20_000, 10), "gases": {"nh3": {"value": 1.0, "unit": "ppm"}}}
    broken = {
        "schema": [
            {**good, "gases": {"nh3": {"value": "lots", "unit": "ppm"}}},
            {**good, "gases": {"nh3": {"value": 1.0, "unit": "furlongs"}}},
            {**good, "gases": {}},
            {key: value for key, value in good.items() if key != "gases"},
        ],
        "out_of_range": [{**good, "gases": {"nh3": {"value": -4.0, "unit": "ppm"}}}],
        "bad_coordinates": [{**good, "lat": 0, "lon": 0}],
        "malformed_json": [b"{not json"],
    }
    for payloads in broken.values():
        await send(publisher, "em-bad", *payloads)
    # An array with one good and one bad element: the good one is stored.
    await send(
        publisher, "em-mixed", [good, {**good, "ts": good["ts"] + 1000, "wind_dir_deg": 400}]
    )

    async def letters() -> list[asyncpg.Record] | None:
        rows = await pool.fetch(
            "SELECT reason, vehicle_id, item_index, detail FROM dead_letters "
            "WHERE kind = 'emergency' ORDER BY id"
        )
        return rows if len(rows) >= 8 else None

    rows = await eventually(letters)
    reasons = [r["reason"] for r in rows if r["vehicle_id"] == "em-bad"]
    assert sorted(reasons) == sorted(
        reason for reason, payloads in broken.items() for _ in payloads
    )
    [mixed] = [r for r in rows if r["vehicle_id"] == "em-mixed"]
    assert (mixed["reason"], mixed["item_index"]) == ("out_of_range", 1)
    negative = next(
        r for r in rows if r["reason"] == "out_of_range" and r["vehicle_id"] == "em-bad"
    )
    assert "nh3" in negative["detail"]
    stored = await eventually(
        lambda: pool.fetchval(
            "SELECT count(*) FROM emergency_readings WHERE vehicle_id = 'em-mixed'"
        )
    )
    assert stored == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM emergency_readings WHERE vehicle_id = 'em-bad'")
        == 0
    )


async def test_redelivered_emergency_messages_change_nothing(
    service: tuple[httpx.AsyncClient, Publisher], pool: asyncpg.Pool
) -> None:
    client, publisher = service
    incident = await open_incident(
        pool,
        name="chlorine cylinder",
        lat=SOURCE[0],
        lon=SOURCE[1],
        started_at=datetime.now(UTC) - timedelta(minutes=5),
        by=Actor(None, "duty-officer"),
    )
    t0 = now_ms() - 30_000
    reading = {"ts": t0, **at(300, 200), "gases": {"Cl2": {"value": 4.0, "unit": "ppm"}}}
    await send(publisher, "em-dup", reading, reading, [reading, reading])
    # Sent after the copies on the same connection: once it is stored, so are they.
    marker = {"ts": t0 + 1000, **at(300, 200), "gases": {"cl2": {"value": 0.1, "unit": "ppm"}}}
    await send(publisher, "em-dup", marker)

    await eventually(
        lambda: pool.fetchval(
            "SELECT count(*) FROM emergency_readings WHERE vehicle_id = 'em-dup' AND value = 0.1"
        )
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM emergency_readings WHERE vehicle_id = 'em-dup'")
        == 2
    )
    assert await pool.fetchval("SELECT readings FROM vehicles WHERE vehicle_id = 'em-dup'") == 2
    alerts = await incident_alerts(client, incident["id"])
    assert set(alerts) == {"tier:eegl"}  # 4 ppm: over the NRC EEGL (3 ppm), under IDLH
    assert alerts["tier:eegl"]["occurrences"] == 1
    assert alerts["tier:eegl"]["severity"] == "warning"
