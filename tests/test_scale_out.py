"""Scaling out is starting more workers: two ingest workers in one MQTT v5 shared-subscription
group share the stream, and every reading is stored exactly once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from support import eventually

from simulators.publisher import Publisher, encode
from telemetry.ingest.worker import IngestWorker
from telemetry.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.slow

TOTAL = 2_000
VEHICLES = 40


async def test_two_workers_in_one_share_group_store_every_reading_once(
    database_url: str, pool: asyncpg.Pool, broker: Any
) -> None:
    def settings(client_id: str) -> Settings:
        return Settings(
            database_url=database_url,
            mqtt_url=broker.url,
            mqtt_client_id=client_id,
            mqtt_share_group="ingest-test",
            batch_max_age_ms=50,
        )

    workers = [IngestWorker(settings(f"share-{i}"), pool) for i in range(2)]
    for worker in workers:
        await worker.start()
    try:
        await eventually(lambda: _all_connected(workers))
        await asyncio.sleep(0.5)  # let both SUBSCRIBEs reach the broker
        start_ms = time.time_ns() // 1_000_000 - TOTAL // VEHICLES * 1000
        messages = [
            (
                f"telemetry/walkthrough/share-{i % VEHICLES:02d}".encode(),
                encode(
                    {
                        "ts": start_ms + (i // VEHICLES) * 1000,
                        "lat": 39.99,
                        "lon": 116.31,
                        "pm25": 30,
                    }
                ),
            )
            for i in range(TOTAL)
        ]
        async with Publisher(MqttEndpoint(broker.url), "share-publisher") as pub:
            await pub.publish(messages)
            assert await pub.drain(30)

        async def stored() -> bool:
            n = await pool.fetchval("SELECT count(*) FROM walkthrough_readings")
            return bool(n == TOTAL)

        await eventually(stored)
        shares = [w.committed_messages for w in workers]
        assert sum(shares) == TOTAL  # each message went to exactly one member of the group
        assert min(shares) > 0  # and both members took part
        assert await pool.fetchval("SELECT sum(readings) FROM vehicles") == TOTAL
    finally:
        for worker in workers:
            await worker.stop()


async def _all_connected(workers: list[IngestWorker]) -> bool:
    return all(w.mqtt_connected for w in workers)
