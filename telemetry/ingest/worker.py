"""The ingest worker: receive → batch → decode → validate → (per kind) store → detect → alert.

One worker runs inside one asyncio process; its owner (``run_worker`` or the API's lifespan)
creates the pool, starts the worker and stops it. Start more workers with the same
``TELEMETRY_MQTT_SHARE_GROUP`` (and distinct client ids) to scale out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np

from telemetry import metrics
from telemetry.alerts.episodes import auto_resolve, record_exceedances
from telemetry.alerts.exceedance import Exceedance
from telemetry.db import create_pool
from telemetry.ingest.batcher import Batcher
from telemetry.ingest.decode import Decoder
from telemetry.ingest.mqtt import MqttConsumer
from telemetry.kinds import registry
from telemetry.kinds.checks import Limits
from telemetry.kinds.contract import Kind, KindPipeline, Message, Outcome
from telemetry.settings import Settings
from telemetry.store.deadletter import DeadLetter, insert_dead_letters

__all__ = ["IngestWorker", "run_worker"]

log = logging.getLogger(__name__)

# The database is unreachable or overloaded: retry the same batch.
_TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
# Something in the data was refused: find the message and dead-letter it.
_DATA = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


#: How often kinds get to judge what fell due without input (see KindPipeline.idle).
_IDLE_TICK_S = 1.0
#: A message committed this long after it arrived means intake outruns the worker: say so in
#: the log (at most every _BEHIND_LOG_EVERY_S); the metrics show it continuously.
_BEHIND_S = 5.0
_BEHIND_LOG_EVERY_S = 30.0
#: "Now" for the last idle tick at shutdown: everything in progress is due.
_END_OF_TIME_US = 2**62


def _now_us() -> int:
    return time.time_ns() // 1000


class IngestWorker:
    """Consumes telemetry from MQTT and commits it, acknowledging only what is committed."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        pipelines: Iterable[KindPipeline[Any, Any]] | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        chosen = registry.pipelines(settings) if pipelines is None else pipelines
        self._pipelines: dict[Kind, KindPipeline[Any, Any]] = {p.kind: p for p in chosen}
        self._decoder = Decoder(
            {k: p.record for k, p in self._pipelines.items()},
            topic_prefix=settings.mqtt_topic_prefix,
            max_payload_bytes=settings.max_payload_bytes,
            max_readings_per_message=settings.max_readings_per_message,
        )
        self._limits = Limits(settings.max_future_skew_s, settings.max_age_s)
        self._batcher = Batcher(
            self._flush,
            self._acknowledge,
            max_rows=settings.batch_max_rows,
            max_age_s=settings.batch_max_age_ms / 1000,
        )
        self._consumer = MqttConsumer(settings, self._batcher)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Batches and idle ticks both advance the pipelines' state: one at a time.
        self._commit_lock = asyncio.Lock()
        self.committed_messages = 0  # messages this worker has committed and acknowledged
        self._behind_logged = -math.inf

    @property
    def mqtt_connected(self) -> bool:
        return self._consumer.connected

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth

    async def start(self) -> None:
        await self.refresh()
        self._batcher.start()
        await self._consumer.start()
        s = self._settings
        period = min(s.segments_refresh_s, s.thresholds_refresh_s)
        self._tasks = [
            asyncio.create_task(self._every(period, self.refresh), name="refresh"),
            asyncio.create_task(
                self._every(s.alert_sweep_s, self._sweep_alerts), name="alert-sweep"
            ),
            asyncio.create_task(self._every(_IDLE_TICK_S, self._idle), name="idle-tick"),
        ]

    async def stop(self) -> None:
        """Ordered shutdown: stop intake, commit what is pending within the drain deadline
        (its PUBACKs still go out), cancel the periodic tasks, then disconnect."""
        self._stopping = True
        await self._batcher.close(drain_s=self._settings.shutdown_drain_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            # Judge what is still in progress (drive passes) rather than drop it.
            await self._idle(now_us=_END_OF_TIME_US)
        except (*_TRANSIENT, asyncpg.PostgresError) as exc:
            log.warning("could not judge the passes in progress at shutdown: %r", exc)
        await self._consumer.stop()

    async def refresh(self) -> None:
        """Reload every kind's reference data (segments, thresholds, …)."""
        for pipeline in self._pipelines.values():
            await pipeline.refresh(self._pool)

    async def _idle(self, now_us: int | None = None) -> None:
        """Let every kind judge what fell due without new input, in its own transaction."""
        async with self._commit_lock:
            now_us = _now_us() if now_us is None else now_us
            async with self._pool.acquire() as conn:
                for pipeline in self._pipelines.values():
                    outcome = await pipeline.idle(conn, now_us=now_us)
                    opened = 0
                    if outcome.exceedances:
                        async with conn.transaction():
                            opened = await record_exceedances(conn, outcome.exceedances)
                    pipeline.committed(outcome)
                    _count([], [], [(pipeline, outcome)], outcome.exceedances, opened)

    async def _sweep_alerts(self) -> None:
        quiet = self._settings.alert_quiet_period_s
        resolved = await auto_resolve(self._pool, quiet_period_s=quiet, now=datetime.now(UTC))
        if resolved:
            log.info("auto-resolved %d quiet alert(s)", resolved)

    async def _every(self, period_s: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await job()
            except _TRANSIENT as exc:
                log.warning("%s failed (%r); next try in %.0f s", job.__name__, exc, period_s)
            except Exception:
                # A periodic job must outlive a bug or a missing migration: one failed run
                # is logged and the next one tries again.
                log.exception("%s failed; next try in %.0f s", job.__name__, period_s)

    # -- the batch path --------------------------------------------------------------------

    async def _flush(self, messages: Sequence[Message]) -> None:
        """Commit ``messages``; retry while the database is unavailable; isolate messages the
        database refuses (dead-lettered as db_rejected) so one cannot block the others."""
        started = time.perf_counter()
        delay = 0.2
        while True:
            try:
                await self._commit_isolating(messages)
                break
            except _TRANSIENT as exc:
                metrics.DB_RETRIES.inc()
                if self._stopping:
                    raise
                n = len(messages)
                log.warning(
                    "database unavailable (%r); retrying %d messages in %.1f s", exc, n, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.batch_retry_max_s)
        self.committed_messages += len(messages)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.observe(len(messages))
        oldest_us = min(m.received_us for m in messages)
        lag_s = max(0.0, (_now_us() - oldest_us) / 1e6)
        metrics.INGEST_LAG.set(lag_s)
        if lag_s > _BEHIND_S and time.monotonic() - self._behind_logged > _BEHIND_LOG_EVERY_S:
            self._behind_logged = time.monotonic()
            log.warning(
                "falling behind: a message waited %.1f s to be committed; %d more are queued "
                "(the broker holds the rest: add workers or database capacity)",
                lag_s,
                self._batcher.depth,
            )

    def _acknowledge(self, tokens: Sequence[object]) -> None:
        self._consumer.acknowledge(tokens)

    async def _commit_isolating(self, messages: Sequence[Message]) -> None:
        try:
            await self._commit(messages)
        except _DATA as exc:
            if len(messages) > 1:
                half = len(messages) // 2
                await self._commit_isolating(messages[:half])
                await self._commit_isolating(messages[half:])
                return
            msg = messages[0]
            log.warning("database refused a message on %s: %s", msg.topic, exc)
            letter = DeadLetter(
                msg.received_us, msg.topic, None, None, "db_rejected", str(exc), None, msg.payload
            )
            async with self._pool.acquire() as conn, conn.transaction():
                await insert_dead_letters(conn, [letter])
            metrics.REJECTS.labels("db_rejected").inc()

    async def _commit(self, messages: Sequence[Message]) -> None:
        async with self._commit_lock:
            await self._commit_locked(messages)

    async def _commit_locked(self, messages: Sequence[Message]) -> None:
        now_us = _now_us()
        decoded = self._decoder.decode(messages)
        dead = list(decoded.dead)
        accepted = []
        for kind, rows in decoded.rows.items():
            pipeline = self._pipelines[kind]
            batch = pipeline.to_batch(rows)
            ok, reason, detail = pipeline.check(batch, now_us=now_us, limits=self._limits)
            for row in np.flatnonzero(~ok).tolist():
                dead.append(rows.dead_letter(row, messages, kind, reason[row], detail[row]))
            accepted.append((pipeline, batch.take(ok) if not ok.all() else batch))

        outcomes: list[tuple[KindPipeline[Any, Any], Outcome[Any]]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for pipeline, batch in accepted:
                outcomes.append((pipeline, await pipeline.commit(conn, batch, now_us=now_us)))
            await insert_dead_letters(conn, dead)
            exceedances = [e for _, o in outcomes for e in o.exceedances]
            opened = await record_exceedances(conn, exceedances)

        # Committed: only now may state derived from this batch move forward.
        for pipeline, outcome in outcomes:
            pipeline.committed(outcome)
        _count(messages, dead, outcomes, exceedances, opened)


def _count(
    messages: Sequence[Message],
    dead: Sequence[DeadLetter],
    outcomes: Sequence[tuple[KindPipeline[Any, Any], Outcome[Any]]],
    exceedances: Sequence[Exceedance],
    opened: int,
) -> None:
    """Metrics once per batch, never per message."""
    for kind, n in Counter(
        m.topic.split("/", 2)[1] if m.topic.count("/") >= 2 else "" for m in messages
    ).items():
        metrics.MESSAGES.labels(kind).inc(n)
    for pipeline, outcome in outcomes:
        kind = pipeline.kind.value
        metrics.READINGS.labels(kind, "stored").inc(outcome.stored)
        metrics.READINGS.labels(kind, "duplicate").inc(outcome.accepted - outcome.stored)
    for reason, n in Counter(d.reason for d in dead).items():
        metrics.REJECTS.labels(reason).inc(n)
    for (kind, rule), n in Counter((e.kind, e.rule) for e in exceedances).items():
        metrics.EXCEEDANCES.labels(kind, rule).inc(n)
    if opened:
        metrics.ALERTS_OPENED.inc(opened)


async def run_worker(settings: Settings) -> None:
    """Run one ingest worker until SIGINT/SIGTERM (``telemetry ingest``)."""
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    worker = IngestWorker(settings, pool)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start()
        log.info("ingest worker %s running", settings.mqtt_client_id)
        await stop.wait()
    finally:
        await worker.stop()
        await pool.close()
