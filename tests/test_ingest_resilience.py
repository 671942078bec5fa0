"""Nothing a vehicle sends, and no hiccup of the database, stops ingest; health tells the truth.

Against the real broker and database: poison payloads are dead-lettered and acknowledged
while valid readings behind them are stored (also across a restart); a statement cancelled
by the database (SQLSTATE class 57) is retried and loses nothing; /healthz turns 503 while a
message waits past the limit and when the worker has failed; ``telemetry ingest`` exits
non-zero when its batcher dies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from support import api_client, eventually, publish

from telemetry.cli import main
from telemetry.db import create_pool
from telemetry.ingest import worker as worker_module
from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.contract import KindRows, Message, Outcome
from telemetry.kinds.walkthrough.pipeline import WalkthroughPipeline
from telemetry.kinds.walkthrough.record import WalkthroughBatch
from telemetry.settings import Settings


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _settings(database_url: str, broker: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "mqtt_url": broker.url,
        "mqtt_client_id": f"resilience-{uuid.uuid4().hex[:8]}",
        "batch_max_age_ms": 50,
        "ingest_enabled": False,
    }
    return Settings(**(values | overrides))


def _walk(ts: int, **extra: Any) -> dict[str, Any]:
    return {"ts": ts, "lat": 39.99, "lon": 116.31, "pm25": 12.0, **extra}


def _gas(ts: int, unit: str = "ppm") -> dict[str, Any]:
    return {"ts": ts, "lat": 39.5, "lon": 116.5, "gases": {"H2S": {"value": 1.0, "unit": unit}}}


def _pass(ts: int) -> dict[str, Any]:
    return {"ts": ts, "lat": 39.9, "lon": 116.4, "plate": "京A12345", "fuel_type": "gasoline"}


#: (topic, payload, reason): each one message, dead-lettered once with that reason.
POISON: list[tuple[str, bytes, str]] = [
    (
        "telemetry/walkthrough/poison",
        b'{"ts":10000000000000000,"lat":39.9,"lon":116.3}',
        "schema",
    ),
    (
        "telemetry/remote_sensing/poison",
        json.dumps(_pass(10**16)).encode(),
        "schema",
    ),
    ("telemetry/emergency/poison", json.dumps(_gas(-(10**16))).encode(), "schema"),
    ("telemetry/walkthrough/poison", b'{"ts":1,"lat":39.9,"lon":116.3,"x":"\xff\xfe"}', ""),
    ("telemetry/walkthrough/poison", b"[" * 50_000 + b"]" * 50_000, "schema"),
    ("telemetry/emergency/poison", b"[" * 50_000, "schema"),
    ("telemetry/walkthrough/poison", b'{"ts":1,"lat":1e400,"lon":116.3}', "out_of_range"),
    ("telemetry/walkthrough/poison", b'{"ts":1,"lat":39.9,"lon":116.3,"lat":40}', "schema"),
    (
        "telemetry/emergency/poison",
        b'{"ts":1,"lat":39.9,"lon":116.3,"gases":{"co":{"value":1,"unit":"ppm"},'
        b'"co":{"value":2,"unit":"ppm"}}}',
        "schema",
    ),
    # Passes every check; the database refuses the NUL in its jsonb "extra" (class 22).
    (
        "telemetry/walkthrough/poison",
        b'{"ts":%d,"lat":39.9,"lon":116.3,"x":"\\u0000"}' % (time.time_ns() // 1_000_000),
        "db_rejected",
    ),
    ("telemetry/nonsense/poison", b"{}", "unknown_kind"),
    ("telemetry/walkthrough/poison", b"NaN", "malformed_json"),
]


async def _dead_letters(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await pool.fetch("SELECT reason, detail, topic, payload FROM dead_letters ORDER BY id")
    )


async def _stored(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM walkthrough_readings) AS w,"
        " (SELECT count(*) FROM rs_passes) AS r,"
        " (SELECT count(*) FROM emergency_readings) AS e"
    )
    return int(row["w"]), int(row["r"]), int(row["e"])


async def _subscribed(worker: IngestWorker) -> bool:
    return worker.mqtt_connected


async def test_poison_messages_are_dead_lettered_and_readings_behind_them_are_stored(
    database_url: str, pool: asyncpg.Pool, broker: Any
) -> None:
    settings = _settings(database_url, broker)
    t = now_ms()
    worker = IngestWorker(settings, pool)
    await worker.start()
    try:
        await eventually(lambda: _subscribed(worker))
        for topic, payload, _ in POISON:
            publish(broker, topic, [payload])
        publish(broker, "telemetry/walkthrough/good", [json.dumps(_walk(t - 2000))])
        publish(broker, "telemetry/remote_sensing/good", [json.dumps(_pass(t - 2000))])
        # Units in any letter case are accepted and stored in lower case.
        publish(broker, "telemetry/emergency/good", [json.dumps(_gas(t - 2000, unit="PPM"))])

        async def all_settled() -> bool:
            return await _stored(pool) == (1, 1, 1) and len(await _dead_letters(pool)) >= len(
                POISON
            )

        await eventually(all_settled)
        assert worker.failure is None
    finally:
        await worker.stop()

    dead = {bytes(d["payload"]): d for d in await _dead_letters(pool)}
    assert len(dead) == len(POISON)
    for topic, payload, reason in POISON:
        letter = dead[payload]
        assert letter["topic"] == topic
        if reason:
            assert letter["reason"] == reason, letter
        else:
            assert letter["reason"] in {"malformed_json", "db_rejected"}, letter
    assert await pool.fetchval("SELECT unit FROM emergency_readings") == "ppm"

    # A restart (same session): nothing was left unacknowledged, so nothing comes back; a
    # reading sent while the worker was away is stored.
    publish(broker, "telemetry/walkthrough/good", [json.dumps(_walk(t - 1000))])
    worker = IngestWorker(settings, pool)
    await worker.start()
    try:

        async def caught_up() -> bool:
            return (await _stored(pool))[0] == 2

        await eventually(caught_up)
        publish(broker, "telemetry/walkthrough/good", [json.dumps(_walk(t))])

        async def latest() -> bool:
            return (await _stored(pool))[0] == 3

        await eventually(latest)
    finally:
        await worker.stop()
    assert len(await _dead_letters(pool)) == len(POISON)


MESSAGE = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda ts, lat, extra: json.dumps({"ts": ts, "lat": lat, "lon": 116.3, **extra}),
        st.one_of(st.integers(), st.just(now_ms())),
        st.one_of(st.floats(), st.just(39.9)),
        st.dictionaries(st.sampled_from(["pm25", "flag", "x", "gases"]), st.integers()),
    ).map(str.encode),
)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    payloads=st.lists(
        st.tuples(st.sampled_from(["walkthrough", "remote_sensing", "emergency"]), MESSAGE),
        min_size=1,
        max_size=40,
    )
)
async def test_random_batches_end_stored_or_dead_lettered(
    database_url: str, payloads: Sequence[tuple[str, bytes]]
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        settings = Settings(database_url=database_url, ingest_enabled=False)
        worker = IngestWorker(settings, pool)
        await worker.refresh()
        base = time.time_ns() // 1000  # distinct arrival times identify the messages
        messages = [
            Message(f"telemetry/{kind}/v{i % 3}", payload, base + i)
            for i, (kind, payload) in enumerate(payloads)
        ]
        await worker._flush(messages)
        seen = set()
        for table in ("dead_letters", "walkthrough_readings", "rs_passes", "emergency_readings"):
            seen |= {
                r["us"]
                for r in await pool.fetch(
                    f"SELECT (extract(epoch FROM received_at) * 1e6)::bigint AS us FROM {table}"
                    " WHERE received_at >= to_timestamp($1::float8 / 1e6)",
                    base,
                )
            }
        # A message whose reading has the (vehicle, ts) of one stored before is a duplicate,
        # not a new row: only such messages may be missing.
        for m in messages:
            if m.received_us not in seen:
                _, kind, vehicle = m.topic.split("/")
                table = TABLES[kind]
                ts_ms = json.loads(m.payload)["ts"]
                assert await pool.fetchval(
                    f"SELECT count(*) FROM {table} WHERE vehicle_id = $1"
                    " AND ts = to_timestamp($2::float8 / 1e3)",
                    vehicle,
                    ts_ms,
                ), m
    finally:
        await pool.close()


TABLES = {
    "walkthrough": "walkthrough_readings",
    "remote_sensing": "rs_passes",
    "emergency": "emergency_readings",
}


async def test_a_cancelled_statement_is_retried_and_nothing_is_lost(
    database_url: str, pool: asyncpg.Pool, broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Every new connection to this database cancels statements after 200 ms (SQLSTATE
    # 57014); the test's own pool was opened before, so it can hold a lock for long.
    name = database_url.rsplit("/", 1)[1]
    await pool.execute(f"ALTER DATABASE \"{name}\" SET statement_timeout = '200ms'")
    settings = _settings(database_url, broker)
    worker_pool = await create_pool(database_url, min_size=1, max_size=2)
    worker = IngestWorker(settings, worker_pool)
    locker = await pool.acquire()
    try:
        await worker.start()
        await eventually(lambda: _subscribed(worker))
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE walkthrough_readings IN ACCESS EXCLUSIVE MODE")
        caplog.set_level(logging.WARNING, logger="telemetry.ingest.worker")
        publish(broker, "telemetry/walkthrough/timeout", [json.dumps(_walk(now_ms() - 1000))])

        async def cancelled() -> bool:
            return any("57014" in r.getMessage() for r in caplog.records)

        await eventually(cancelled)
        await lock.rollback()

        async def stored() -> bool:
            return (await _stored(pool))[0] == 1

        await eventually(stored)
        assert worker.failure is None
        assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    finally:
        await pool.release(locker)
        await worker.stop()
        await worker_pool.close()


async def test_healthz_is_503_while_a_message_waits_past_the_limit(
    database_url: str, pool: asyncpg.Pool, broker: Any
) -> None:
    settings = _settings(database_url, broker, ingest_enabled=True, health_max_unacked_age_s=0.001)
    locker = await pool.acquire()
    try:
        async with api_client(settings) as client:

            async def healthy() -> bool:
                return (await client.get("/healthz")).status_code == 200

            await eventually(healthy)
            lock = locker.transaction()
            await lock.start()
            await locker.execute("LOCK TABLE walkthrough_readings IN ACCESS EXCLUSIVE MODE")
            publish(broker, "telemetry/walkthrough/stuck", [json.dumps(_walk(now_ms() - 1000))])

            async def stuck() -> dict[str, Any] | None:
                response = await client.get("/healthz")
                return response.json() if response.status_code == 503 else None

            body = await eventually(stuck)
            assert body["checks"]["mqtt"]["status"] == "ok"
            assert body["checks"]["ingest"]["status"] == "failed"
            assert "oldest unacknowledged message" in body["checks"]["ingest"]["detail"]
            assert body["oldest_unacked_age_s"] > 0.001
            await lock.rollback()

            await eventually(healthy)
            body = (await client.get("/healthz")).json()
            assert body["oldest_unacked_age_s"] is None
            assert (await _stored(pool))[0] == 1
    finally:
        await pool.release(locker)


async def _boom(self: IngestWorker, messages: Sequence[Message]) -> None:
    raise RuntimeError("boom")


async def test_a_dead_batcher_makes_healthz_503_and_asks_serve_to_stop(
    database_url: str, broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(IngestWorker, "_flush", _boom)
    settings = _settings(database_url, broker, ingest_enabled=True)
    stops: list[str] = []
    async with api_client(settings) as client:
        resources = client._transport.app.state.resources  # type: ignore[attr-defined]
        resources.on_ingest_failure = stops.append

        async def connected() -> bool:
            return (await client.get("/healthz")).status_code == 200

        await eventually(connected)
        publish(broker, "telemetry/walkthrough/any", [json.dumps(_walk(now_ms()))])

        async def failed() -> dict[str, Any] | None:
            response = await client.get("/healthz")
            return response.json() if response.status_code == 503 else None

        body = await eventually(failed)
        assert "batcher task died: RuntimeError: boom" in body["checks"]["ingest"]["detail"]
        assert stops and "RuntimeError: boom" in stops[0]


def test_telemetry_ingest_exits_non_zero_when_its_batcher_dies(
    database_url: str, broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(database_url, broker)

    async def queue_one_message() -> None:
        # A first run creates the worker's persistent session; the message published while
        # it is away waits there for the next run.
        pool = await create_pool(database_url, min_size=1, max_size=2)
        worker = IngestWorker(settings, pool)
        await worker.start()
        try:
            await eventually(lambda: _subscribed(worker))
        finally:
            await worker.stop()
            await pool.close()
        publish(broker, "telemetry/walkthrough/any", [json.dumps(_walk(now_ms()))])

    asyncio.run(queue_one_message())
    monkeypatch.setattr(IngestWorker, "_flush", _boom)
    monkeypatch.setenv("TELEMETRY_DATABASE_URL", database_url)
    monkeypatch.setenv("TELEMETRY_MQTT_URL", broker.url)
    monkeypatch.setenv("TELEMETRY_MQTT_CLIENT_ID", settings.mqtt_client_id)
    with pytest.raises(SystemExit) as exited:
        main(["ingest"])
    # sys.exit with a message exits with status 1.
    assert isinstance(exited.value.code, str)
    assert "batcher task died: RuntimeError: boom" in exited.value.code


class _Fragile(WalkthroughPipeline):
    """A walk-through pipeline with a bug for one value: conversion fails on pm25 = 666, the
    commit on pm25 = 777 (an exception no failure class covers)."""

    def to_batch(self, rows: KindRows) -> WalkthroughBatch:
        if any(r.pm25 == 666 for r in rows.records):
            raise OverflowError("666 does not fit")
        return super().to_batch(rows)

    async def commit(
        self, conn: asyncpg.Connection, batch: WalkthroughBatch, *, now_us: int
    ) -> Outcome[Any]:
        if (batch.pm25 == 777).any():
            raise ZeroDivisionError("777 divides by zero")
        return await super().commit(conn, batch, now_us=now_us)


async def test_unexpected_exceptions_dead_letter_only_the_message_that_raises_them(
    database_url: str, pool: asyncpg.Pool
) -> None:
    settings = Settings(database_url=database_url, ingest_enabled=False)
    worker = IngestWorker(settings, pool, pipelines=[_Fragile(settings)])
    await worker.refresh()
    t = now_ms()
    values = [10, 666, 11, 777, 12]
    messages = [
        Message(f"telemetry/walkthrough/f{i}", json.dumps(_walk(t - i, pm25=v)).encode(), i + 1)
        for i, v in enumerate(values)
    ]
    await worker._flush(messages)

    stored = await pool.fetch("SELECT pm25 FROM walkthrough_readings ORDER BY pm25")
    assert [r["pm25"] for r in stored] == [10, 11, 12]
    dead = await pool.fetch("SELECT reason, detail, vehicle_id FROM dead_letters ORDER BY id")
    assert {(d["reason"], d["detail"].split(":")[0]) for d in dead} == {
        ("unprocessable", "OverflowError"),
        ("unprocessable", "ZeroDivisionError"),
    }
    assert worker.failure is None


def test_messages_on_topics_of_unknown_kinds_share_one_metric_label() -> None:
    def count(kind: str) -> float:
        return REGISTRY.get_sample_value("telemetry_messages_total", {"kind": kind}) or 0.0

    unknown, walkthrough = count("unknown"), count("walkthrough")
    topics = [f"telemetry/kind-{uuid.uuid4().hex[:6]}/v" for _ in range(3)]
    messages = [Message(t, b"{}", 1) for t in [*topics, "x", "telemetry/walkthrough/v"]]
    worker_module._count(messages, [], [], [], 0)
    assert count("unknown") == unknown + 4
    assert count("walkthrough") == walkthrough + 1
    assert all(count(t.split("/")[1]) == 0.0 for t in topics)
