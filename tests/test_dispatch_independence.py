"""Detection does not depend on how the broker spreads messages (docs/adr/0011): the same plume
drives published to one worker, and to two and three workers in one shared-subscription group
on the project's Mosquitto (round-robin: each worker sees every other reading of a vehicle),
give identical alerts, passes and sensor faults; so does a worker stopping mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from support import eventually

from simulators.fleet import Fleet
from simulators.network import network_from_geojson
from simulators.plume import Plumes, default_sources
from simulators.publisher import Publisher, encode, topic_for
from telemetry.db import create_pool
from telemetry.ingest.worker import IngestWorker
from telemetry.roads.importer import import_roads
from telemetry.settings import MqttEndpoint, Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ROADS = ROOT / "data/roads/demo.geojson"
ADMIN_URL = os.environ.get(
    "TELEMETRY_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
VEHICLES = 4
SECONDS = 90

Messages = list[tuple[bytes, bytes]]


def _drives() -> Messages:
    """Four vehicles for 90 s at 1 Hz from the start of the roads leading to the demo's plume
    sources, measured a few minutes ago, one message per reading in time order."""
    network = network_from_geojson(json.loads(ROADS.read_text()))
    fleet = Fleet(network, Plumes(default_sources(network), network), vehicles=VEHICLES,
                  seed=11, prefix="dsp-")  # fmt: skip
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=SECONDS + 120)
    out: Messages = []
    for k in range(SECONDS):
        for vehicle_id, reading in fleet.advance(start + timedelta(seconds=k)):
            out.append((topic_for("telemetry", vehicle_id).encode(), encode(reading)))
    return out


def _settings(
    database_url: str, broker: Any, group: str, client_id: str, *, leaves: bool = False
) -> Settings:
    return Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=client_id,
        mqtt_share_group=group,
        batch_max_age_ms=20,
        pass_max_gap_s=2,
        # Saturation and jumps on PM2.5 near the dust source: faults to compare too.
        fault_full_scale={"pm25": 150.0},
        fault_max_step={"pm25": 25.0},
        hotspot_min_samples=5,
        detect_tick_s=0.1,
        detect_rebalance_s=0.2,
        detect_lease_s=3,
        detect_worker_dead_s=3,
        # A worker taken out of the group for good ends its MQTT session, or the broker
        # would keep queueing its share of the stream for it.
        mqtt_session_expiry_s=0 if leaves else 3600,
    )


@asynccontextmanager
async def _database(template_db: str, clone: Callable[[str, str], Awaitable[None]],
                    like: str) -> AsyncIterator[str]:  # fmt: skip
    """A fresh migrated database with the demo roads, dropped afterwards."""
    name = f"telemetry_test_{uuid.uuid4().hex[:12]}"
    await clone(template_db, name)
    url = urlunsplit(urlsplit(like)._replace(path=f"/{name}"))
    try:
        await import_roads(Settings(database_url=url), ROADS, segment_length_m=30)
        yield url
    finally:
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


class Run:
    """Workers in one share group on one database."""

    def __init__(self, database_url: str, broker: Any, workers: int, *, leaves: bool) -> None:
        self.url = database_url
        self.broker = broker
        self.group = f"dsp-{uuid.uuid4().hex[:6]}"
        self.count = workers
        self.leaves = leaves
        self.workers: list[IngestWorker] = []
        self.pools: list[asyncpg.Pool] = []

    async def __aenter__(self) -> Run:
        for i in range(self.count):
            pool = await create_pool(self.url, min_size=1, max_size=4)
            settings = _settings(
                self.url,
                self.broker,
                self.group,
                f"{self.group}-{i}",
                leaves=self.leaves and i == 0,
            )
            worker = IngestWorker(settings, pool)
            self.pools.append(pool)
            self.workers.append(worker)
            await worker.start()
        await eventually(self._connected)
        await asyncio.sleep(0.5)  # let every SUBSCRIBE reach the broker
        return self

    async def _connected(self) -> bool:
        return all(w.mqtt_connected for w in self.workers)

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            await worker.stop()
        for pool in self.pools:
            await pool.close()

    async def publish(self, messages: Messages) -> None:
        async with Publisher(MqttEndpoint(self.broker.url), f"{self.group}-pub") as pub:
            await pub.publish(messages)
            assert await pub.drain(30)

    async def stored(self, expected_rows: int) -> bool:
        n = await self.pools[-1].fetchval("SELECT count(*) FROM walkthrough_readings")
        return bool(n == expected_rows)

    async def judged(self, expected_rows: int) -> None:
        """Wait until every row is stored and judged, and no pass is open."""
        pool = self.pools[-1]

        async def done() -> bool:
            row = await pool.fetchrow(
                "SELECT (SELECT count(*) FROM walkthrough_readings) AS n,"
                " (SELECT max(received_at) FROM walkthrough_readings) AS newest,"
                " (SELECT min(judged_through_us) FROM detection_leases) AS through"
            )
            if row["n"] != expected_rows:
                return False
            # Past the gap after the newest arrival, every pass has closed.
            newest_us = int(row["newest"].timestamp() * 1e6)
            return bool(row["through"] > newest_us + 2_100_000)

        await eventually(done, within_s=30)


async def _outcome(database_url: str) -> dict[str, Any]:
    """What detection left in the database, without ids and wall-clock times."""
    conn = await asyncpg.connect(database_url)
    try:
        alerts = await conn.fetch(
            "SELECT kind, rule, subject, pollutant, segment_id, occurrences, vehicles, rules,"
            " segments, first_seen, last_seen, last_value, peak_value, peak_ratio, severity,"
            " confidence, status, details::text AS details, verification::text AS verification"
            " FROM alerts ORDER BY subject, pollutant, rule"
        )
        faults = await conn.fetch(
            "SELECT vehicle_id, ts, fault, fault_pollutants FROM walkthrough_readings"
            " WHERE fault IS NOT NULL ORDER BY vehicle_id, ts"
        )
        cursors = await conn.fetch(
            "SELECT vehicle_id, judged_us, flat_since_us FROM walkthrough_detect_cursors"
            " ORDER BY vehicle_id"
        )
    finally:
        await conn.close()
    return {
        "alerts": [dict(r) for r in alerts],
        "faults": [tuple(r) for r in faults],
        "cursors": [tuple(r) for r in cursors],
    }


async def _run(
    template_db: str,
    clone: Callable[[str, str], Awaitable[None]],
    like: str,
    broker: Any,
    messages: Messages,
    *,
    workers: int,
    stop_one_after: int | None = None,
) -> tuple[dict[str, Any], list[int]]:
    async with _database(template_db, clone, like) as url:
        async with Run(url, broker, workers, leaves=stop_one_after is not None) as run:
            if stop_one_after is None:
                await run.publish(messages)
            else:
                await run.publish(messages[:stop_one_after])
                # Stored, so that none is left in the stopping worker's MQTT session (the
                # broker keeps those for it); its open passes are not judged yet.
                await eventually(lambda: run.stored(stop_one_after))
                assert run.workers[0].committed_messages > 0
                await run.workers.pop(0).stop()  # its partitions go to the others
                await run.publish(messages[stop_one_after:])
            await run.judged(len(messages))
            shares = [w.committed_messages for w in run.workers]
        return await _outcome(url), shares


async def test_one_two_and_three_workers_on_a_round_robin_broker_judge_alike(
    template_db: str,
    clone_database: Callable[[str, str], Awaitable[None]],
    database_url: str,
    broker: Any,
) -> None:
    messages = _drives()
    one, _ = await _run(template_db, clone_database, database_url, broker, messages, workers=1)
    two, shares2 = await _run(
        template_db, clone_database, database_url, broker, messages, workers=2
    )
    three, shares3 = await _run(
        template_db, clone_database, database_url, broker, messages, workers=3
    )

    assert min(shares2) > 0 and min(shares3) > 0  # every worker received part of the stream
    assert one["alerts"], "the drives pass the plume sources: some alert must open"
    assert one["faults"], "saturated and jumping PM2.5 near the source: some faults"
    assert two == one
    assert three == one


async def test_a_worker_stopping_mid_stream_changes_nothing(
    template_db: str,
    clone_database: Callable[[str, str], Awaitable[None]],
    database_url: str,
    broker: Any,
) -> None:
    messages = _drives()
    one, _ = await _run(template_db, clone_database, database_url, broker, messages, workers=1)
    rebalanced, _ = await _run(
        template_db,
        clone_database,
        database_url,
        broker,
        messages,
        workers=2,
        stop_one_after=len(messages) // 2,
    )

    assert one["alerts"]
    assert rebalanced == one
