"""Load-test arithmetic on literal arrays, the load plan, and the measurement against PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import numpy as np
import pytest

from api.app import create_app
from simulators.load import (
    Opened,
    alert_latencies,
    compute_report,
    fetch_stored,
    plan_load,
    run_load,
    stamp,
    wait_until_stored,
)
from simulators.network import load_network, network_from_geojson
from simulators.plume import Source, default_sources
from simulators.walkthrough import DEFAULT_ROADS
from telemetry.ingest.decode import Decoder
from telemetry.kinds.contract import Kind, Message
from telemetry.kinds.walkthrough.record import WalkthroughReading, walkthrough_batch
from telemetry.kinds.walkthrough.repository import insert_walkthrough
from telemetry.roads.importer import import_roads
from telemetry.settings import Settings

LON0, LAT0, STEP = 116.30, 39.98, 0.004


def grid_geojson(n: int = 3) -> dict[str, object]:
    lines = [[[LON0 + j * STEP, LAT0 + i * STEP] for j in range(n)] for i in range(n)]
    lines += [[[LON0 + i * STEP, LAT0 + j * STEP] for j in range(n)] for i in range(n)]
    features = [
        {"type": "Feature", "properties": {"name": f"street {k}"},
         "geometry": {"type": "LineString", "coordinates": coords}}
        for k, coords in enumerate(lines)
    ]  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def test_latency_percentiles_interpolate_between_ranks() -> None:
    sent = np.full(100, 1_000.0)
    stored = 1_000.0 + np.arange(1.0, 101.0)  # latencies 1 … 100 ms
    report = compute_report(
        published=100,
        acknowledged=100,
        publish_started_ms=1_000.0,
        publish_finished_ms=1_050.0,
        sent_at_ms=sent,
        stored_at_ms=stored,
    )
    assert report.latency_p50_ms == pytest.approx(50.5)
    assert report.latency_p99_ms == pytest.approx(99.01)
    assert report.latency_max_ms == 100.0
    assert report.stored == 100
    assert report.missing == 0
    assert report.publish_rate == pytest.approx(2_000.0)  # 100 readings in 50 ms
    assert report.sustained_rate == pytest.approx(
        1_000.0
    )  # 100 readings, first sent → last stored 100 ms


def test_missing_readings_and_duplicates_are_counted() -> None:
    report = compute_report(
        published=5,
        acknowledged=4,
        publish_started_ms=0.0,
        publish_finished_ms=1_000.0,
        sent_at_ms=np.array([0.0, 250.0, 500.0, 500.0]),
        stored_at_ms=np.array([10.0, 270.0, 530.0, 2_000.0]),
        duplicates=1,
        dead_letters={"bad_coordinates": 1},
    )
    assert (report.stored, report.duplicates, report.missing) == (4, 1, 2)
    assert report.acknowledged == 4
    assert report.latency_p50_ms == pytest.approx(25.0)  # of 10, 20, 30, 1500
    assert report.latency_max_ms == 1_500.0
    assert report.sustained_rate == pytest.approx(2.0)  # 4 rows over 0 → 2000 ms
    assert "bad_coordinates=1" in str(report)


def test_rows_without_sent_at_count_as_stored_but_not_timed() -> None:
    report = compute_report(
        published=3,
        acknowledged=3,
        publish_started_ms=0.0,
        publish_finished_ms=10.0,
        sent_at_ms=np.array([100.0, np.nan, 300.0]),
        stored_at_ms=np.array([140.0, 900.0, 320.0]),
    )
    assert report.stored == 3
    assert report.missing == 0
    assert report.latency_p50_ms == pytest.approx(30.0)
    assert report.latency_max_ms == 40.0
    assert report.sustained_rate == pytest.approx(3 / 0.8)  # first sent 100, last stored 900


def test_nothing_stored_reports_everything_missing() -> None:
    report = compute_report(
        published=10,
        acknowledged=10,
        publish_started_ms=0.0,
        publish_finished_ms=100.0,
        sent_at_ms=np.empty(0),
        stored_at_ms=np.empty(0),
    )
    assert (report.stored, report.missing, report.sustained_rate) == (0, 10, 0.0)
    assert math.isnan(report.latency_p50_ms)
    assert "missing" in str(report)


def test_alert_latencies_give_their_own_percentiles_and_count() -> None:
    report = compute_report(
        published=2,
        acknowledged=2,
        publish_started_ms=0.0,
        publish_finished_ms=10.0,
        sent_at_ms=np.array([0.0, 5.0]),
        stored_at_ms=np.array([100.0, 105.0]),
        alert_latency_ms=np.array([300.0, np.nan, 500.0]),
    )
    assert report.alerts_opened == 2  # the NaN (no triggering reading found) is left out
    assert report.alert_p50_ms == pytest.approx(400.0)
    assert report.alert_max_ms == 500.0
    assert "publish→alert" in str(report)
    assert "kept" in str(report)  # no cleanup recorded: the rows were kept


def plan(count: int, vehicles: int, publishers: int, end_s: float = 1_772_000_000.0):
    network = network_from_geojson(grid_geojson())
    sources = [Source(LON0 + STEP, LAT0 + STEP, "no2", 300.0)]
    return plan_load(network, sources, count=count, vehicles=vehicles, publishers=publishers,
                     seed=1, prefix="load-t-", topic_prefix="telemetry", end_s=end_s)  # fmt: skip


def test_load_plan_gives_every_message_its_own_vehicle_second() -> None:
    load = plan(count=1_000, vehicles=7, publishers=3)
    assert load.count == 1_000
    keys = Counter()
    for publisher, messages in enumerate(load.per_publisher):
        for topic, payload in stamp(messages, 1_772_000_123_456):
            reading = msgspec.json.decode(payload)
            vehicle = topic.decode().rsplit("/", 1)[1]
            assert (int(vehicle.rsplit("-", 1)[1]) - 1) % 3 == publisher
            assert reading["sent_at_ms"] == 1_772_000_123_456
            assert isinstance(reading["ts"], int)
            keys[(vehicle, reading["ts"])] += 1
    assert len(keys) == 1_000
    assert max(keys.values()) == 1
    assert max(ts for _, ts in keys) == 1_772_000_000_000


def test_load_plan_keeps_each_vehicle_on_one_publisher_in_time_order() -> None:
    load = plan(count=600, vehicles=6, publishers=4)
    owner: dict[bytes, int] = {}
    last: dict[bytes, int] = {}
    for publisher, messages in enumerate(load.per_publisher):
        for topic, payload in stamp(messages, 0):
            assert owner.setdefault(topic, publisher) == publisher
            ts = msgspec.json.decode(payload)["ts"]
            assert ts > last.get(topic, -1)
            last[topic] = ts
    assert len(owner) == 6


async def test_measurement_counts_stored_readings_and_their_latency(database_url: str) -> None:
    end_s = time.time() - 60.0
    load = plan(count=300, vehicles=10, publishers=2, end_s=end_s)
    sent_ms = int(time.time() * 1000)
    messages = [
        Message(topic.decode(), payload, received_us=sent_ms * 1000)
        for part in load.per_publisher
        for topic, payload in stamp(part, sent_ms)
    ]
    decoded = Decoder(
        {Kind.WALKTHROUGH: WalkthroughReading},
        topic_prefix="telemetry",
        max_payload_bytes=65_536,
        max_readings_per_message=10,
    ).decode(messages)
    assert not decoded.dead
    batch = walkthrough_batch(decoded.rows[Kind.WALKTHROUGH])
    vehicle_ids = list(load.vehicle_ids)
    conn = await asyncpg.connect(database_url)
    try:
        n = len(batch)
        async with conn.transaction():
            await insert_walkthrough(conn, batch, np.full(n, -1), np.full(n, np.nan))
        stored = await wait_until_stored(conn, vehicle_ids, 300, settle_s=1.0, max_wait_s=5.0)
        readings = await fetch_stored(conn, vehicle_ids)
    finally:
        await conn.close()

    assert stored == 300
    report = compute_report(
        published=300,
        acknowledged=300,
        publish_started_ms=sent_ms,
        publish_finished_ms=sent_ms + 15,
        sent_at_ms=readings.sent_at_ms,
        stored_at_ms=readings.stored_at_ms,
        duplicates=readings.duplicates,
        dead_letters=readings.dead_letters,
    )
    assert (report.stored, report.missing, report.duplicates) == (300, 0, 0)
    assert readings.dead_letters == {}
    assert (readings.sent_at_ms == sent_ms).all()
    assert report.latency_p50_ms >= 0.0
    assert report.latency_p99_ms <= report.latency_max_ms


# Rows another vehicle owns before a load run; the run must leave them exactly as they are.
_OTHER_ROWS = """
INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, pm25)
VALUES ('real-001', now() - interval '1 hour', now(), 39.99, 116.31, 41.0);
INSERT INTO vehicles (vehicle_id, kind, last_ts, last_lat, last_lon, last_received_at, readings)
VALUES ('real-001', 'walkthrough', now() - interval '1 hour', 39.99, 116.31, now(), 1);
INSERT INTO dead_letters (received_at, topic, kind, vehicle_id, reason, detail, payload)
VALUES (now(), 'telemetry/walkthrough/real-001', 'walkthrough', 'real-001', 'schema', 'x', 'x');
INSERT INTO alerts (kind, subject, pollutant, rule, limit_value, unit, source, first_seen,
                    last_seen, last_value, peak_value, peak_multiple, vehicles)
VALUES ('walkthrough', 'segment:999999', 'pm25', 'hotspot', 75, 'ug/m3', 'test',
        now() - interval '1 hour', now() - interval '1 hour', 120, 130, 0.7, '{real-001}');
"""
_SNAPSHOT = {
    table: f"SELECT to_jsonb(t) AS row FROM {table} t ORDER BY 1::text"
    for table in ("walkthrough_readings", "vehicles", "dead_letters", "alerts", "alert_events")
}


async def _snapshot(conn: asyncpg.Connection) -> dict[str, list[str]]:
    return {t: sorted(r["row"] for r in await conn.fetch(q)) for t, q in _SNAPSHOT.items()}


async def _rows_of(conn: asyncpg.Connection, like: str) -> dict[str, int]:
    tables = await conn.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND column_name = 'vehicle_id' AND table_name IN (SELECT table_name FROM"
        " information_schema.tables WHERE table_type = 'BASE TABLE')"
    )
    counts = {
        r["table_name"]: int(
            await conn.fetchval(
                f'SELECT count(*) FROM "{r["table_name"]}" WHERE vehicle_id LIKE $1', like
            )
        )
        for r in tables
    }
    counts["alerts"] = int(
        await conn.fetchval(
            "SELECT count(*) FROM alerts WHERE EXISTS (SELECT 1 FROM unnest(vehicles) v"
            " WHERE v LIKE $1)",
            like,
        )
    )
    return counts


async def test_load_run_removes_what_it_wrote_and_leaves_other_vehicles_alone(
    database_url: str, tmp_path: Path
) -> None:
    from conftest import start_broker

    broker = start_broker(tmp_path / "broker", database_url=database_url)
    service = Settings(
        database_url=database_url,
        mqtt_url=broker.ingest_url,
        mqtt_client_id=f"load-test-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
    )
    try:
        await import_roads(service, DEFAULT_ROADS, segment_length_m=30)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(_OTHER_ROWS)
            before = await _snapshot(conn)
            app = create_app(service)
            async with app.router.lifespan_context(app):
                report = await run_load(
                    Settings(database_url=database_url, mqtt_url=broker.plain_url),
                    load_network(DEFAULT_ROADS),
                    default_sources(load_network(DEFAULT_ROADS)),
                    rate=2_000.0,
                    count=900,
                    vehicles=6,
                    publishers=2,
                    seed=3,
                    prefix="load-",
                    stop=asyncio.Event(),
                    settle_s=3.0,
                    max_wait_s=60.0,
                )
            after = await _snapshot(conn)
            left = await _rows_of(conn, "load-%")
        finally:
            await conn.close()
    finally:
        broker.process.terminate()
        broker.process.wait(timeout=10)

    assert (report.published, report.stored, report.missing) == (900, 900, 0)
    assert report.removed is not None
    assert report.removed["walkthrough_readings"] == 900
    assert report.removed["vehicles"] == 6
    assert report.removed["alerts"] >= report.alerts_opened
    assert report.shared_alerts == 0
    assert set(left.values()) == {0}, left
    assert after == before


async def test_publish_to_alert_counts_from_the_reading_that_closed_the_opening_pass(
    database_url: str,
) -> None:
    # Vehicle a: its opening pass ends at t0+2 s and its next reading (t0+3 s) was stored before
    # the alert appeared: that reading closed the pass. Vehicle b: the reading after its pass was
    # stored only after the alert appeared (the pass closed on silence): its last reading counts.
    t0 = 1_772_000_000
    rows = [("load-x-a", t0 + k, 1_000.0 * k, 1_000.0 * k + 50.0) for k in range(5)]
    rows += [("load-x-b", t0 + k, 1_000.0 * k, 1_000.0 * k + 50.0) for k in range(3)]
    rows.append(("load-x-b", t0 + 60, 60_000.0, 60_050.0))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, extra,"
            " stored_at) VALUES ($1, to_timestamp($2), now(), 39.9, 116.3,"
            " jsonb_build_object('sent_at_ms', $3::float8), to_timestamp($4 / 1000.0))",
            rows,
        )
        end = datetime.fromtimestamp(t0 + 2, UTC)
        opened = {
            1: Opened(3_400.0, ("load-x-a",), end),
            2: Opened(30_000.0, ("load-x-b",), end),
            3: Opened(9_000.0, ("real-001",), end),  # not the run's: left out
        }
        latency = await alert_latencies(conn, opened, ["load-x-a", "load-x-b"])
    finally:
        await conn.close()
    assert latency == {1: 3_400.0 - 3_000.0, 2: 30_000.0 - 2_000.0}
