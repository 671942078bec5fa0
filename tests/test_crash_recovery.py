"""kill -9 of the ingest process mid-stream, then a restart: no reading lost, none duplicated.

The worker acknowledges a message only after its batch commits, and keeps a persistent MQTT
session, so what it held unacknowledged when it died is redelivered to its successor (same
client id); the unique key (vehicle_id, ts) absorbs whatever had already been committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from conftest import Broker, start_broker

from simulators.publisher import Publisher, encode
from telemetry.settings import MqttEndpoint

pytestmark = pytest.mark.slow

TOTAL = 6_000
VEHICLES = 20


@pytest.fixture
def crash_broker(tmp_path: Path, broker_database: str) -> Iterator[Broker]:
    b = start_broker(tmp_path / "mosquitto", database_url=broker_database)
    yield b
    b.process.terminate()
    b.process.wait(timeout=10)


def _start_ingest(database_url: str, broker: Broker, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": database_url,
        "TELEMETRY_MQTT_URL": broker.url,
        "TELEMETRY_MQTT_CLIENT_ID": "crash-test-worker",
        "TELEMETRY_BATCH_MAX_AGE_MS": "100",
        "TELEMETRY_BATCH_MAX_ROWS": "500",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "telemetry", "ingest"], env=env, stdout=out, stderr=out
        )


async def _count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM walkthrough_readings"))


async def _wait_for(conn: asyncpg.Connection, target: int, within_s: float) -> int:
    deadline = time.monotonic() + within_s
    n = await _count(conn)
    while n < target and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        n = await _count(conn)
    return n


def _messages(start_ms: int) -> list[tuple[bytes, bytes]]:
    msgs = []
    for i in range(TOTAL):
        vehicle = f"crash-{i % VEHICLES:02d}"
        reading = {
            "ts": start_ms + (i // VEHICLES) * 1000,
            "lat": 39.985 + (i % VEHICLES) * 1e-4,
            "lon": 116.31,
            "pm25": 30.0 + i % 7,
        }
        msgs.append((f"telemetry/walkthrough/{vehicle}".encode(), encode(reading)))
    return msgs


async def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    database_url: str, crash_broker: Broker, tmp_path: Path
) -> None:
    log = tmp_path / "ingest.log"
    conn = await asyncpg.connect(database_url)
    worker = _start_ingest(database_url, crash_broker, log)
    try:
        endpoint = MqttEndpoint(crash_broker.url)
        start_ms = time.time_ns() // 1_000_000 - TOTAL // VEHICLES * 1000
        messages = _messages(start_ms)
        async with Publisher(endpoint, "crash-test-publisher") as pub:
            # The worker's session must exist before the stream starts. Until it subscribes,
            # the broker drops what is published; the same reading sent again is harmless.
            for _ in range(30):
                await pub.publish(messages[:1])
                if await _wait_for(conn, 1, 1.0) == 1:
                    break
            assert await _count(conn) == 1, log.read_text()

            killed_at = None
            for chunk_start in range(1, TOTAL, 250):
                await pub.publish(messages[chunk_start : chunk_start + 250])
                stored = await _count(conn)
                if killed_at is None and stored >= TOTAL // 3:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait(timeout=10)
                    killed_at = stored
                await asyncio.sleep(0.02)
            if killed_at is None:
                # A slow machine: the worker is still working through the backlog.
                killed_at = await _wait_for(conn, TOTAL // 3, 60)
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
            assert await pub.drain(60)
        assert killed_at < TOTAL
        print(f"killed after {killed_at} of {TOTAL} readings were stored")

        # The broker has queued the rest for the dead worker's persistent session.
        worker = _start_ingest(database_url, crash_broker, log)
        stored = await _wait_for(conn, TOTAL, 60)
        assert stored == TOTAL, log.read_text()[-3000:]
        # No duplicates: every (vehicle, ts) once, and each reading counted once per vehicle.
        distinct = await conn.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT vehicle_id, ts FROM walkthrough_readings) d"
        )
        assert distinct == TOTAL
        counted = await conn.fetchval("SELECT sum(readings) FROM vehicles")
        assert counted == TOTAL
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        await conn.close()
