"""Remote-sensing passes through the real broker, ingest worker, PostgreSQL and HTTP API:
mosquitto_pub publishes, the worker judges and stores, the alert appears over HTTP."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from conftest import Broker
from support import bearer, eventually, grant_token
from support import publish as publish_all

from api.app import create_app
from simulators.remote_sensing import RoadsideSite
from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.remote_sensing.pipeline import RemoteSensingPipeline
from telemetry.kinds.walkthrough.pipeline import WalkthroughPipeline
from telemetry.settings import Settings

TOPIC = "telemetry/remote_sensing/rs-test-1"


def a_pass(ts_ms: int, plate: str, **overrides: Any) -> dict[str, Any]:
    """A valid gasoline pass (VSP about 9 kW/t) with NO 2400 ppm, over the 1500 ppm limit."""
    return {
        "ts": ts_ms,
        "lat": 39.983,
        "lon": 116.3152,
        "site_id": "A110108001",
        "lane": 1,
        "plate": plate,
        "plate_color": 0,
        "fuel_type": "gasoline",
        "speed_kmh": 40.0,
        "accel_ms2": 0.5,
        "slope_pct": 1.0,
        "temp_c": 20.0,
        "rh_pct": 40.0,
        "pressure_kpa": 101.2,
        "wind_speed_ms": 2.0,
        "co2_pct": 12.5,
        "co_pct": 0.4,
        "hc_ppm": 80.0,
        "no_ppm": 2400.0,
        "images": ["far/0001.jpg", "near/0001.jpg"],
        **overrides,
    }


@pytest.fixture
async def service(
    database_url: str, pool: asyncpg.Pool, broker: Broker
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"rs-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        ingest_enabled=False,
    )
    worker = IngestWorker(
        settings, pool, pipelines=[WalkthroughPipeline(settings), RemoteSensingPipeline(settings)]
    )
    await worker.start()
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = bearer(await grant_token(database_url))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=headers
            ) as client:
                yield client
    finally:
        await worker.stop()


async def test_two_consecutive_exceedances_raise_one_high_emitter_alert(
    service: httpx.AsyncClient, broker: Broker, pool: asyncpg.Pool
) -> None:
    now_ms = time.time_ns() // 1_000_000
    first = a_pass(now_ms - 120_000, "京A·12345")
    second = a_pass(now_ms - 60_000, "京A12345", lane=2)
    publish(broker, TOPIC, json.dumps(first))

    async def stored(n: int) -> bool:
        return await pool.fetchval("SELECT count(*) FROM rs_passes") >= n

    await eventually(lambda: stored(1))
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 0
    publish(broker, TOPIC, json.dumps(second))

    async def alerts() -> list[dict[str, Any]]:
        r = await service.get("/api/v1/alerts", params={"kind": "remote_sensing"})
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    [alert] = await eventually(alerts)
    assert alert["subject"] == "plate:京A12345"
    assert alert["rule"] == "high_emitter"
    assert alert["pollutant"] == "no"
    assert alert["limit_value"] == 1500.0
    assert alert["unit"] == "ppm"
    assert alert["last_value"] == 2400.0
    assert alert["peak_multiple"] == pytest.approx(0.6)
    assert alert["vehicles"] == ["rs-test-1"]
    evidence = alert["details"]["evidence"]
    assert [e["lane"] for e in evidence] == [1, 2]
    assert alert["details"]["plate_colour"] == "blue"

    row = await pool.fetchrow(
        "SELECT plate_color_code, plate_colour, valid, no_over, co_over, opacity_over, vsp_kw_t "
        "FROM rs_passes WHERE lane = 2"
    )
    assert dict(row) == {
        "plate_color_code": "0",
        "plate_colour": "blue",
        "valid": True,
        "no_over": True,
        "co_over": False,
        "opacity_over": None,
        "vsp_kw_t": pytest.approx(9.08, abs=0.01),
    }
    assert await pool.fetchval("SELECT confirmations FROM rs_high_emitters") == 1


async def test_redelivered_pass_changes_nothing(
    service: httpx.AsyncClient, broker: Broker, pool: asyncpg.Pool
) -> None:
    now_ms = time.time_ns() // 1_000_000
    passes = [a_pass(now_ms - 90_000, "京B77777"), a_pass(now_ms - 30_000, "京B77777")]
    publish(broker, TOPIC, json.dumps(passes))

    async def alert() -> dict[str, Any] | None:
        r = await service.get("/api/v1/alerts", params={"kind": "remote_sensing"})
        items = r.json()["items"]
        return items[0] if items else None

    before = await eventually(alert)
    # The same passes again, then a marker pass behind them on the same topic.
    publish(broker, TOPIC, json.dumps(passes[1]))
    publish(broker, TOPIC, json.dumps(passes))
    publish(broker, TOPIC, json.dumps(a_pass(now_ms - 10_000, "京C00001", no_ppm=100.0)))

    async def marker() -> bool:
        n = await pool.fetchval("SELECT count(*) FROM rs_passes WHERE plate = '京C00001'")
        return bool(n)

    await eventually(marker)
    assert await pool.fetchval("SELECT count(*) FROM rs_passes") == 3
    after = await alert()
    assert after is not None
    assert after["occurrences"] == before["occurrences"] == 1
    assert await pool.fetchval("SELECT confirmations FROM rs_high_emitters") == 1
    readings = await pool.fetchval("SELECT readings FROM vehicles WHERE vehicle_id = 'rs-test-1'")
    assert readings == 3


async def test_invalid_pass_between_exceedances_is_stored_with_its_reason(
    service: httpx.AsyncClient, broker: Broker, pool: asyncpg.Pool
) -> None:
    now_ms = time.time_ns() // 1_000_000
    passes = [
        a_pass(now_ms - 90_000, "京D11111", fuel_type="diesel", opacity_pct=45.0, no_ppm=500.0),
        a_pass(now_ms - 60_000, "京D11111", fuel_type="diesel", opacity_pct=10.0, slope_pct=-2.0),
        a_pass(now_ms - 30_000, "京D11111", fuel_type="diesel", opacity_pct=50.0, no_ppm=500.0),
    ]
    publish(broker, TOPIC, json.dumps(passes))

    async def alert() -> dict[str, Any] | None:
        r = await service.get("/api/v1/alerts", params={"kind": "remote_sensing"})
        items = r.json()["items"]
        return items[0] if items else None

    found = await eventually(alert)
    assert (found["pollutant"], found["subject"]) == ("opacity", "plate:京D11111")
    assert found["details"]["fuel_type"] == "diesel"
    reasons = await pool.fetch("SELECT valid, invalid_reason FROM rs_passes ORDER BY ts")
    assert [tuple(r) for r in reasons] == [(True, None), (False, "downhill"), (True, None)]


async def test_malformed_records_are_dead_lettered_with_reasons(
    service: httpx.AsyncClient, broker: Broker, pool: asyncpg.Pool
) -> None:
    now_ms = time.time_ns() // 1_000_000
    good = a_pass(now_ms - 5_000, "京E22222", no_ppm=100.0)
    publish(broker, TOPIC, "{not json")
    publish(broker, TOPIC, json.dumps([good, {**good, "fuel_type": "kerosene"}]))
    publish(broker, TOPIC, json.dumps({**good, "ts": now_ms, "opacity_pct": 140.0}))

    async def dead() -> list[asyncpg.Record] | None:
        rows = await pool.fetch(
            "SELECT reason, kind, vehicle_id, item_index FROM dead_letters ORDER BY id"
        )
        return rows if len(rows) >= 3 else None

    rows = await eventually(dead)
    assert sorted((r["reason"], r["item_index"]) for r in rows) == [
        ("malformed_json", None),
        ("out_of_range", None),
        ("schema", 1),
    ]
    assert {r["kind"] for r in rows} == {"remote_sensing"}
    assert await pool.fetchval("SELECT count(*) FROM rs_passes") == 1


async def test_simulated_site_traffic_is_accepted_and_finds_its_high_emitters(
    service: httpx.AsyncClient, broker: Broker, pool: asyncpg.Pool
) -> None:
    site = RoadsideSite(116.3152, 39.98304, high_emitters=3, high_emitter_share=0.05, seed=7)
    start = datetime.now(UTC) - timedelta(minutes=50)
    passes = [p for s in range(0, 2400, 10) for p in site.advance(start + timedelta(seconds=s), 10)]
    for i in range(0, len(passes), 100):
        publish(broker, "telemetry/remote_sensing/rs-sim", json.dumps(passes[i : i + 100]))

    async def all_stored() -> bool:
        return await pool.fetchval("SELECT count(*) FROM rs_passes") == len(passes)

    await eventually(all_stored)
    plates = {r["plate"] for r in await pool.fetch("SELECT plate FROM rs_high_emitters")}
    assert plates and plates <= set(site.high_plates)
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    valid_share = await pool.fetchval("SELECT avg(valid::int) FROM rs_passes")
    assert 0.5 < valid_share < 0.95


def publish(broker: Broker, topic: str, payload: str) -> None:
    """One QoS 1 message, published by a client we did not write."""
    publish_all(broker, topic, [payload])


async def test_high_emitter_alert_stays_open_until_a_later_clean_pass_of_the_plate(
    service: httpx.AsyncClient, broker: Broker, pool: asyncpg.Pool
) -> None:
    now_ms = time.time_ns() // 1_000_000
    publish(broker, TOPIC, json.dumps(a_pass(now_ms - 180_000, "京B11111")))
    publish(broker, TOPIC, json.dumps(a_pass(now_ms - 120_000, "京B11111", lane=2)))

    async def alert() -> dict[str, Any] | None:
        r = await service.get("/api/v1/alerts", params={"kind": "remote_sensing"})
        items: list[dict[str, Any]] = r.json()["items"]
        return items[0] if items else None

    found = await eventually(alert)
    # An officer may close it only with a note (it otherwise waits for a clean pass).
    r = await service.post(f"/api/v1/alerts/{found['id']}/resolve", json={})
    assert r.status_code == 422, r.text
    # A clean pass measured before the alert's last pass (a late upload) closes nothing.
    publish(broker, TOPIC, json.dumps(a_pass(now_ms - 600_000, "京B11111", no_ppm=300.0)))
    await eventually(
        lambda: _count(pool, "SELECT count(*) FROM rs_passes WHERE plate = '京B11111'", 3)
    )
    assert (await service.get(f"/api/v1/alerts/{found['id']}")).json()["status"] == "open"
    # A later valid pass of the plate under the NO limit resolves it by verification.
    publish(broker, TOPIC, json.dumps(a_pass(now_ms - 30_000, "京B11111", no_ppm=300.0)))

    async def resolved() -> dict[str, Any] | None:
        a: dict[str, Any] = (await service.get(f"/api/v1/alerts/{found['id']}")).json()
        return a if a["status"] == "resolved" else None

    done = await eventually(resolved)
    assert (done["resolution"], done["resolved_by"]) == ("verified", "verification")
    assert done["verification"]["after"]["value"] == 300.0
    assert done["verification"]["before"]["last_value"] == 2400.0


async def _count(pool: asyncpg.Pool, sql: str, n: int) -> bool:
    return bool(await pool.fetchval(sql) >= n)
