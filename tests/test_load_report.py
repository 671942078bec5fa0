"""Load-test arithmetic on literal arrays, the load plan, and the measurement against PostgreSQL."""

from __future__ import annotations

import math
import time
from collections import Counter

import asyncpg
import msgspec
import numpy as np
import pytest

from simulators.load import (
    compute_report,
    fetch_stored,
    plan_load,
    stamp,
    wait_until_stored,
)
from simulators.network import network_from_geojson
from simulators.plume import Source
from telemetry.ingest.decode import Decoder
from telemetry.kinds.contract import Kind, Message
from telemetry.kinds.walkthrough.record import WalkthroughReading, walkthrough_batch
from telemetry.kinds.walkthrough.repository import insert_walkthrough

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
