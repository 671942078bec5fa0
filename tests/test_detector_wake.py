"""The detector ticks when a batch commits, not only once a period (docs/adr/0011): with a
period far longer than the test, the rows a worker stores are judged all the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import eventually

from simulators.fleet import Fleet
from simulators.network import network_from_geojson
from simulators.plume import Plumes, default_sources
from simulators.publisher import Publisher, encode, topic_for
from telemetry.db import create_pool
from telemetry.ingest.worker import IngestWorker
from telemetry.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.slow

ROADS = Path(__file__).resolve().parent.parent / "data/roads/demo.geojson"
SECONDS = 20


def _drive() -> tuple[list[tuple[bytes, bytes]], str, int]:
    """One vehicle at 1 Hz for 20 s, measured a few minutes ago: the messages, the vehicle
    and the measurement time of its newest reading (epoch µs)."""
    network = network_from_geojson(json.loads(ROADS.read_text()))
    fleet = Fleet(network, Plumes(default_sources(network), network), vehicles=1, seed=3,
                  prefix="wake-")  # fmt: skip
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=SECONDS + 180)
    out = []
    for k in range(SECONDS):
        for vehicle_id, reading in fleet.advance(start + timedelta(seconds=k)):
            out.append((topic_for("telemetry", vehicle_id).encode(), encode(reading)))
    newest = start + timedelta(seconds=SECONDS - 1)
    return out, fleet.vehicle_ids[0], int(newest.timestamp()) * 1_000_000


async def test_a_commit_wakes_the_detector_between_its_periodic_ticks(
    database_url: str, broker: Any
) -> None:
    messages, vehicle_id, newest_us = _drive()
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id="wake-worker",
        batch_max_age_ms=20,
        # After the tick at start, the next periodic one comes long after this test's end:
        # only the commits can have the rows judged.
        detect_tick_s=3600,
    )
    pool = await create_pool(database_url, min_size=1, max_size=4)
    worker = IngestWorker(settings, pool)
    try:
        await worker.start()
        await eventually(lambda: _true(worker.mqtt_connected))
        async with Publisher(MqttEndpoint(broker.url), "wake-pub") as pub:
            await pub.publish(messages)
            assert await pub.drain(30)

        async def judged() -> bool:
            judged_us = await pool.fetchval(
                "SELECT judged_us FROM walkthrough_detect_cursors WHERE vehicle_id = $1",
                vehicle_id,
            )
            return judged_us == newest_us

        await eventually(judged, within_s=30)
        stored = await pool.fetchval(
            "SELECT count(*) FROM walkthrough_readings WHERE vehicle_id = $1", vehicle_id
        )
        assert stored == len(messages)
    finally:
        await worker.stop()
        await pool.close()


async def _true(value: bool) -> bool:
    return value
