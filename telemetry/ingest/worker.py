"""The ingest worker: receive → batch → decode → validate → (per kind) store → detect → alert.

One worker runs inside one asyncio process; its owner (``run_worker`` or the API's lifespan)
creates the pool, starts the worker and stops it. Start more workers with the same
``TELEMETRY_MQTT_SHARE_GROUP`` (and distinct client ids) to scale out, on any broker: detection
that needs a vehicle's readings in order runs in the worker's detector
(``ingest/detector.py``, docs/adr/0011) on committed rows, not in the batch.

Failures are contained to the smallest unit that explains them: a reading (its checks, its
conversion into columns), then a message (its decoding; a commit that fails for it alone),
then the batch (retried while the database is unavailable). What cannot be processed is
dead-lettered and acknowledged, so nothing behind it waits. A long-lived task that dies anyway
makes the worker *failed*: its owner logs why and stops the process (the broker redelivers
whatever was not acknowledged, so a restart is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
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
from telemetry.alerts.episodes import record_exceedances, sweep_alerts
from telemetry.alerts.exceedance import Exceedance
from telemetry.db import create_pool
from telemetry.errors import IngestFailedError
from telemetry.ingest.batcher import Batcher
from telemetry.ingest.decode import Decoder
from telemetry.ingest.detector import Detector
from telemetry.ingest.failures import Failure, classify, describe
from telemetry.ingest.hj212 import Hj212Intake
from telemetry.ingest.hj212_tcp import Hj212Listener
from telemetry.ingest.mqtt import MqttConsumer
from telemetry.kinds import registry
from telemetry.kinds.checks import CheckResult, Limits
from telemetry.kinds.contract import Kind, KindPipeline, KindRows, Message, Outcome
from telemetry.settings import Settings
from telemetry.store.deadletter import DeadLetter, insert_dead_letters

__all__ = ["IngestWorker", "run_worker"]

log = logging.getLogger(__name__)

#: Tries of a batch whose commit fails in a way nobody classified (see ingest/failures.py)
#: before it is taken apart to find the message that causes it.
_UNKNOWN_TRIES = 3
#: Messages dead-lettered in a row as ``unprocessable`` by the commit, with no commit storing
#: anything in between: past this the cause is not in the messages (a bug, a missing
#: migration) and the worker stops rather than dead-letter the whole stream.
_MAX_UNEXPLAINED = 20
#: ``telemetry_messages_total{kind}`` for a topic whose kind is none of ours: labels stay
#: bounded whatever topics vehicles publish to.
_UNKNOWN_KIND = "unknown"
_KIND_LABELS = frozenset(k.value for k in Kind)


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
        *,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_failure = on_failure
        self.failure: str | None = None  # why the worker stopped working, once it has
        self._failed = asyncio.Event()
        self._unexplained = 0
        self._pool = pool
        chosen = registry.pipelines(settings) if pipelines is None else pipelines
        self._pipelines: dict[Kind, KindPipeline[Any, Any]] = {p.kind: p for p in chosen}
        self._hj212 = Hj212Intake(settings.mqtt_topic_prefix)
        self._decoder = Decoder(
            {k: p.record for k, p in self._pipelines.items()},
            topic_prefix=settings.mqtt_topic_prefix,
            hj212=self._hj212.decode,
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
        self._detector = Detector(
            settings, pool, self._pipelines.values(), lambda: self._batcher.oldest_received_us
        )
        self._listener = Hj212Listener(settings, self._batcher) if settings.hj212_tcp_port else None
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

    def oldest_unacked_age_s(self, now_us: int | None = None) -> float | None:
        """How long the oldest message received and not yet acknowledged has waited (None
        when every received message is acknowledged)."""
        oldest = self._batcher.oldest_received_us
        if oldest is None:
            return None
        now_us = _now_us() if now_us is None else now_us
        return max(0.0, (now_us - oldest) / 1e6)

    async def failed(self) -> str:
        """Wait until the worker has failed; the reason (also in :attr:`failure`)."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    async def start(self) -> None:
        await self.refresh()
        settle_heap()
        self._batcher.start()
        await self._consumer.start()
        if self._listener is not None:
            await self._listener.start()
        s = self._settings
        period = min(s.segments_refresh_s, s.thresholds_refresh_s)
        self._tasks = [
            asyncio.create_task(self._every(period, self.refresh), name="refresh"),
            asyncio.create_task(
                self._every(s.alert_sweep_s, self._sweep_alerts), name="alert-sweep"
            ),
            asyncio.create_task(self._every(_IDLE_TICK_S, self._idle), name="idle-tick"),
            asyncio.create_task(self._every(_COLLECT_S, _collect_young), name="gc"),
        ]
        self._detector.start()
        for task in (
            self._batcher.task,
            self._consumer.connector,
            self._detector.task,
            *self._tasks,
        ):
            if task is not None:
                task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A long-lived task ended: unless we are stopping, the worker no longer works (the
        MQTT connector, too, runs until stop: it reconnects whenever the connection drops).
        Say why, once, and tell the owner."""
        if self._stopping or task.cancelled():
            return
        exc = task.exception()
        what = describe(exc) if exc is not None else "ended unexpectedly"
        self._fail(f"{task.get_name()} task died: {what}", exc)

    def _fail(self, why: str, exc: BaseException | None = None) -> None:
        if self.failure is not None:
            return
        self.failure = why
        log.error("ingest worker failed: %s", why, exc_info=exc)
        self._failed.set()
        if self._on_failure is not None:
            self._on_failure(why)

    async def stop(self) -> None:
        """Ordered shutdown: stop intake, commit what is pending within the drain deadline
        (its PUBACKs still go out), cancel the periodic tasks, then disconnect."""
        self._stopping = True
        if self._listener is not None:
            await self._listener.stop_reading()
        await self._batcher.close(drain_s=self._settings.shutdown_drain_s)
        if self._listener is not None:
            await self._listener.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Judge what arrived, and (when no other worker goes on) what is still in progress,
        # rather than drop it; then give the partitions to the other workers.
        await self._detector.stop()
        try:
            await self._idle(now_us=_END_OF_TIME_US)
        except Exception as exc:
            log.warning("could not judge the passes in progress at shutdown: %s", describe(exc))
        await self._consumer.stop()

    async def detect(self) -> int:
        """One detector tick now (the detector task ticks by itself once started); the
        exceedances it found."""
        return await self._detector.tick()

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
        s = self._settings
        resolved, stale = await sweep_alerts(
            self._pool,
            quiet_period_s=s.alert_quiet_period_s,
            stale_after_s=s.alert_stale_after_s,
            now=datetime.now(UTC),
        )
        if resolved or stale:
            log.info("auto-resolved %d quiet alert(s), marked %d stale", resolved, stale)

    async def _every(self, period_s: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await job()
            except Exception as exc:
                if classify(exc) is Failure.TRANSIENT:
                    why = describe(exc)
                    log.warning("%s failed (%s); next try in %.0f s", job.__name__, why, period_s)
                    continue
                # A periodic job must outlive a bug or a missing migration: one failed run
                # is logged and the next one tries again.
                log.exception("%s failed; next try in %.0f s", job.__name__, period_s)

    # -- the batch path --------------------------------------------------------------------

    async def _flush(self, messages: Sequence[Message]) -> None:
        """Commit ``messages`` (see :meth:`_commit_resilient`), then account for them."""
        started = time.perf_counter()
        await self._commit_resilient(messages)
        self._detector.wake(messages[-1].received_us)
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
        self._hj212.acknowledge(tokens)  # HJ 212 replies over TCP

    async def _commit_resilient(self, messages: Sequence[Message]) -> None:
        """Commit ``messages`` whatever happens, by the failure's class (ingest/failures.py):
        transient → retry the same batch with back-off for as long as it takes (its
        acknowledgements wait); data → bisect (in :meth:`_commit_isolating`); unknown →
        a few tries, then take the batch apart and dead-letter the messages that fail alone.
        Raises only while stopping, or when failures no message explains
        (:class:`IngestFailedError`)."""
        delay = 0.2
        unknown_tries = 0
        while True:
            try:
                await self._commit_isolating(messages)
                return
            except IngestFailedError:
                raise
            except Exception as exc:
                failure = classify(exc)
                if failure is Failure.TRANSIENT:
                    metrics.DB_RETRIES.inc()
                    if self._stopping:
                        raise
                    log.warning(
                        "database unavailable (%s); retrying %d messages in %.1f s",
                        describe(exc),
                        len(messages),
                        delay,
                    )
                else:
                    unknown_tries += 1
                    if unknown_tries >= _UNKNOWN_TRIES:
                        log.warning(
                            "a batch of %d messages failed %d times (%s); isolating the "
                            "message that causes it",
                            len(messages),
                            unknown_tries,
                            describe(exc),
                        )
                        await self._isolate_unknown(messages)
                        return
                    metrics.DB_RETRIES.inc()
                    log.warning("commit failed (%s); retrying in %.1f s", describe(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.batch_retry_max_s)

    async def _commit_isolating(self, messages: Sequence[Message]) -> None:
        """Commit; when the database refuses a value (data failure), bisect and dead-letter
        the message that carries it as ``db_rejected``. Other failures propagate."""
        try:
            await self._commit(messages)
        except Exception as exc:
            if classify(exc) is not Failure.DATA:
                raise
            if len(messages) > 1:
                half = len(messages) // 2
                await self._commit_isolating(messages[:half])
                await self._commit_isolating(messages[half:])
                return
            log.warning("database refused a message on %s: %s", messages[0].topic, exc)
            await self._dead_letter_message(messages[0], "db_rejected", str(exc))

    async def _isolate_unknown(self, messages: Sequence[Message]) -> None:
        """Bisect a batch whose commit keeps failing unexplained, one try per part: a message
        that fails alone is dead-lettered ``unprocessable``. Transient failures propagate
        (the whole batch is retried; what was already committed is idempotent)."""
        try:
            await self._commit_isolating(messages)
            return
        except IngestFailedError:
            raise
        except Exception as exc:
            if classify(exc) is Failure.TRANSIENT:
                raise
            if len(messages) > 1:
                half = len(messages) // 2
                await self._isolate_unknown(messages[:half])
                await self._isolate_unknown(messages[half:])
                return
            msg = messages[0]
            self._unexplained += 1
            if self._unexplained > _MAX_UNEXPLAINED:
                raise IngestFailedError(
                    f"{self._unexplained} messages in a row failed to commit with nothing "
                    f"stored in between; the cause is not in the messages: {describe(exc)}"
                ) from exc
            log.error("a message on %s cannot be committed: %s", msg.topic, describe(exc))
            await self._dead_letter_message(msg, "unprocessable", describe(exc))

    async def _dead_letter_message(self, msg: Message, reason: str, detail: str) -> None:
        parts = msg.topic.split("/")
        known = len(parts) == 3 and parts[1] in _KIND_LABELS
        letter = DeadLetter(
            msg.received_us,
            msg.topic,
            parts[1] if known else None,
            parts[2] if known else None,
            reason,
            detail,
            None,
            msg.payload,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await insert_dead_letters(conn, [letter])
        metrics.REJECTS.labels(reason).inc()

    async def _commit(self, messages: Sequence[Message]) -> None:
        async with self._commit_lock:
            await self._commit_locked(messages)

    async def _commit_locked(self, messages: Sequence[Message]) -> None:
        now_us = _now_us()
        await self._hj212.lookup(self._pool, messages)
        decoded = self._decoder.decode(messages)
        dead = list(decoded.dead)
        accepted = []
        for kind, rows in decoded.rows.items():
            pipeline = self._pipelines[kind]
            rows, batch, checked = self._prepare(pipeline, rows, messages, dead, now_us)
            if batch is None:
                continue
            ok, reason, detail = checked
            for row in np.flatnonzero(~ok).tolist():
                dead.append(rows.dead_letter(row, messages, kind, reason[row], detail[row]))
            accepted.append((pipeline, batch.take(ok) if not ok.all() else batch))

        outcomes: list[tuple[KindPipeline[Any, Any], Outcome[Any]]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for pipeline, batch in accepted:
                outcomes.append((pipeline, await pipeline.commit(conn, batch, now_us=now_us)))
            await insert_dead_letters(conn, dead)
            await self._hj212.store(conn)
            exceedances = [e for _, o in outcomes for e in o.exceedances]
            opened = await record_exceedances(conn, exceedances)

        # Committed: only now may state derived from this batch move forward.
        for pipeline, outcome in outcomes:
            pipeline.committed(outcome)
        if any(outcome.accepted for _, outcome in outcomes):
            self._unexplained = 0
        _count(messages, dead, outcomes, exceedances, opened)

    def _prepare(
        self,
        pipeline: KindPipeline[Any, Any],
        rows: KindRows,
        messages: Sequence[Message],
        dead: list[DeadLetter],
        now_us: int,
    ) -> tuple[KindRows, Any, CheckResult]:
        """Column batch and check results of one kind's rows. A row that the conversion or
        the checks cannot handle (an exception, not a reason) is found by bisection and
        dead-lettered ``unprocessable`` (appended to ``dead``); the rest go on. Returns the
        rows the batch was built from (``None`` as batch when none is left)."""
        limits = self._limits
        try:
            batch = pipeline.to_batch(rows)
            return rows, batch, pipeline.check(batch, now_us=now_us, limits=limits)
        except Exception:
            pass  # the failure path below finds the rows that cause it

        def failing(index: list[int]) -> list[tuple[int, Exception]]:
            try:
                part = pipeline.to_batch(rows.select(index))
                pipeline.check(part, now_us=now_us, limits=limits)
                return []
            except Exception as exc:
                if len(index) == 1:
                    return [(index[0], exc)]
                half = len(index) // 2
                return failing(index[:half]) + failing(index[half:])

        bad = failing(list(range(len(rows))))
        kind = pipeline.kind
        for row, exc in bad:
            dead.append(rows.dead_letter(row, messages, kind, "unprocessable", describe(exc)))
        log.warning("%d %s record(s) could not be converted or checked", len(bad), kind.value)
        excluded = {row for row, _ in bad}
        good = rows.select([i for i in range(len(rows)) if i not in excluded])
        if len(good):
            try:
                batch = pipeline.to_batch(good)
                return good, batch, pipeline.check(batch, now_us=now_us, limits=limits)
            except Exception as exc:
                # Fails together, passes apart: nothing points at one record, so none is kept.
                for row in range(len(good)):
                    dead.append(
                        good.dead_letter(row, messages, kind, "unprocessable", describe(exc))
                    )
        empty = np.zeros(0, dtype=bool), np.zeros(0, dtype=object), np.zeros(0, dtype=object)
        return good, None, empty


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
        metrics.MESSAGES.labels(kind if kind in _KIND_LABELS else _UNKNOWN_KIND).inc(n)
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


#: Containers allocated between two collections of the youngest generation. Python's 700 has
#: it collect seven times while a 5,000-message batch is decoded, and every tenth of those
#: promotes the batch's short-lived objects so that full collections, which walk every tracked
#: object of the process, run again and again; at saturation the collector took 8-13 % of
#: the ingest process's CPU (docs/performance.md).
GC_YOUNG_THRESHOLD = 50_000


#: How often the young generations are collected whatever their counts: reference cycles made
#: per batch (a library's per-call class, a future and its callback) are then freed within
#: this time instead of when 50,000 more containers are alive, which a steady worker that frees
#: what it allocates may never reach while the cycles hold whole COPY buffers.
_COLLECT_S = 1.0


async def _collect_young() -> None:
    gc.collect(1)


def settle_heap() -> None:
    """Once start-up has loaded what lives as long as the process (modules, the road index,
    reference data): collect, then freeze what is left out of the collector's sight
    (``gc.freeze``), and let the youngest generation hold a micro-batch's worth of containers
    before it is collected. Most of what a batch allocates is freed by reference counting.
    Once per process (a second worker in it, as in tests, finds it done)."""
    young, middle, old = gc.get_threshold()
    if young >= GC_YOUNG_THRESHOLD:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def run_worker(settings: Settings) -> None:
    """Run one ingest worker until SIGINT/SIGTERM (``telemetry ingest``); raise
    :class:`IngestFailedError` (the command exits non-zero) if the worker fails first."""
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    worker = IngestWorker(settings, pool)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(worker.failed())]
    try:
        await worker.start()
        log.info("ingest worker %s running", settings.mqtt_client_id)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await worker.stop()
        await pool.close()
    if worker.failure is not None:
        raise IngestFailedError(f"ingest worker failed: {worker.failure}")
