"""The ingest worker: receive → batch → decode → validate → snap → store → detect → alert.

One worker is one asyncio task group inside a process; its owner (``run_worker`` or the API's
lifespan) creates the pool, starts it, and stops it. Start more workers with the same
``TELEMETRY_MQTT_SHARE_GROUP`` (and distinct client ids) to scale out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import numpy as np

from telemetry.db import create_pool
from telemetry.detect.exceedance import DetectParams, Exceedance, detect_walkthrough
from telemetry.detect.hotspot import BackgroundWindow
from telemetry.detect.quality import quality_mask
from telemetry.detect.thresholds import ThresholdTable
from telemetry.ingest import metrics
from telemetry.ingest.batcher import Batcher
from telemetry.ingest.decode import DeadLetter, Message, decode_messages
from telemetry.ingest.mqtt import MqttConsumer
from telemetry.ingest.validate import Limits, check_walkthrough
from telemetry.kinds import Kind
from telemetry.readings import POLLUTANTS, WalkthroughBatch
from telemetry.settings import Settings
from telemetry.snap import SegmentIndex
from telemetry.store.deadletter import insert_dead_letters
from telemetry.store.episodes import auto_resolve, record_exceedances
from telemetry.store.readings import insert_walkthrough, upsert_vehicles
from telemetry.store.segments import load_segment_geometries
from telemetry.store.thresholds import load_thresholds

__all__ = ["IngestWorker", "run_worker"]

log = logging.getLogger(__name__)

# Errors that say the database is unreachable or overloaded: retry the same batch.
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
# Errors that say something in the data was refused: find the message and dead-letter it.
_DATA = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


def _now_us() -> int:
    return time.time_ns() // 1000


class IngestWorker:
    """Consumes telemetry from MQTT and commits it, acknowledging only what is committed."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._limits = Limits(settings.max_future_skew_s, settings.max_age_s)
        self._params = DetectParams.from_settings(settings)
        self._background = BackgroundWindow()
        self._index = SegmentIndex.build([])
        self._thresholds = ThresholdTable.from_rows([])
        self._batcher = Batcher(
            self._flush,
            max_rows=settings.batch_max_rows,
            max_age_s=settings.batch_max_age_ms / 1000,
        )
        self._consumer = MqttConsumer(settings, self._batcher.submit)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def mqtt_connected(self) -> bool:
        return self._consumer.connected

    @property
    def segments(self) -> int:
        return len(self._index)

    async def start(self) -> None:
        await self.refresh()
        self._batcher.start()
        await self._consumer.start()
        s = self._settings
        self._tasks = [
            asyncio.create_task(
                self._every(s.segments_refresh_s, self._refresh_segments), name="segments"
            ),
            asyncio.create_task(
                self._every(s.thresholds_refresh_s, self._refresh_thresholds), name="thresholds"
            ),
            asyncio.create_task(
                self._every(s.alert_sweep_s, self._sweep_alerts), name="alert-sweep"
            ),
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
        await self._consumer.stop()

    async def refresh(self) -> None:
        """Reload road segments and thresholds from the database."""
        await self._refresh_segments()
        await self._refresh_thresholds()

    async def _refresh_segments(self) -> None:
        geometries = await load_segment_geometries(self._pool)
        self._index = SegmentIndex.build(geometries)

    async def _refresh_thresholds(self) -> None:
        self._thresholds = await load_thresholds(self._pool, Kind.WALKTHROUGH.value)

    async def _sweep_alerts(self) -> None:
        resolved = await auto_resolve(
            self._pool, quiet_period_s=self._settings.alert_quiet_period_s, now=datetime.now(UTC)
        )
        if resolved:
            log.info("auto-resolved %d quiet alert(s)", resolved)

    async def _every(self, period_s: float, job: object) -> None:
        assert callable(job)
        while True:
            await asyncio.sleep(period_s)
            try:
                await job()
            except _TRANSIENT as exc:
                log.warning(
                    "%s failed: %r; retrying in %.0f s",
                    getattr(job, "__name__", job),
                    exc,
                    period_s,
                )

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
                log.warning(
                    "database unavailable (%r); retrying batch of %d in %.1f s",
                    exc,
                    len(messages),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.batch_retry_max_s)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.observe(len(messages))
        metrics.INGEST_LAG.set(max(0.0, (_now_us() - min(m.received_us for m in messages)) / 1e6))

    async def _commit_isolating(self, messages: Sequence[Message]) -> None:
        try:
            await self._commit(messages)
        except _DATA as exc:
            if len(messages) == 1:
                msg = messages[0]
                log.warning("database refused a message on %s: %s", msg.topic, exc)
                letter = DeadLetter(
                    msg.received_us,
                    msg.topic,
                    None,
                    None,
                    "db_rejected",
                    str(exc),
                    None,
                    msg.payload,
                )
                async with self._pool.acquire() as conn, conn.transaction():
                    await insert_dead_letters(conn, [letter])
                metrics.REJECTS.labels("db_rejected").inc()
                return
            half = len(messages) // 2
            await self._commit_isolating(messages[:half])
            await self._commit_isolating(messages[half:])

    async def _commit(self, messages: Sequence[Message]) -> None:
        s = self._settings
        now_us = _now_us()
        decoded = decode_messages(
            messages,
            topic_prefix=s.mqtt_topic_prefix,
            max_payload_bytes=s.max_payload_bytes,
            max_readings_per_message=s.max_readings_per_message,
        )
        batch = decoded.batch
        ok, reason, detail = check_walkthrough(batch, now_us=now_us, limits=self._limits)
        dead = list(decoded.dead)
        for row in np.flatnonzero(~ok):
            msg = messages[int(decoded.message_of[row])]
            item = int(decoded.item_of[row])
            dead.append(
                DeadLetter(
                    msg.received_us,
                    msg.topic,
                    Kind.WALKTHROUGH.value,
                    str(batch.vehicle_id[row]),
                    str(reason[row]),
                    str(detail[row]),
                    None if item < 0 else item,
                    msg.payload,
                )
            )
        accepted = batch.take(ok)
        segment_id, distance = self._index.snap(
            accepted.lon, accepted.lat, accepted.heading_deg, s.snap_tolerance_m
        )
        backgrounds = self._background.levels(
            now_us,
            window_s=s.hotspot_window_s,
            percentile=s.hotspot_percentile,
            min_samples=s.hotspot_min_samples,
        )

        async with self._pool.acquire() as conn, conn.transaction():
            new = await insert_walkthrough(conn, accepted, segment_id, distance)
            fresh, fresh_segments = accepted.take(new), segment_id[new]
            await upsert_vehicles(conn, Kind.WALKTHROUGH.value, fresh)
            await insert_dead_letters(conn, dead)
            exceedances = self._detect(fresh, fresh_segments, backgrounds)
            opened = await record_exceedances(conn, exceedances)

        # Committed: only now may state derived from this batch move forward.
        self._remember_background(fresh, fresh_segments)
        self._count(messages, decoded.dead, dead, len(accepted), len(new), exceedances, opened)

    def _detect(
        self, fresh: WalkthroughBatch, segment_id: np.ndarray, backgrounds: dict[str, float]
    ) -> list[Exceedance]:
        if len(fresh) == 0:
            return []
        return detect_walkthrough(fresh, segment_id, self._thresholds, backgrounds, self._params)

    def _remember_background(self, fresh: WalkthroughBatch, segment_id: np.ndarray) -> None:
        if len(fresh) == 0:
            return
        usable, why = quality_mask(
            fresh, segment_id, max_speed_kmh=self._settings.quality_max_speed_kmh
        )
        # Unsnapped readings still describe the air: the background ignores only bad ones.
        usable |= why == "unsnapped"
        self._background.update(
            fresh.ts_us[usable], {p: fresh.pollutant(p)[usable] for p in POLLUTANTS}
        )
        skipped, counts = np.unique(why[~usable].astype(str), return_counts=True)
        for code, n in zip(skipped.tolist(), counts.tolist(), strict=True):
            metrics.DETECTION_SKIPPED.labels(code).inc(n)

    @staticmethod
    def _count(
        messages: Sequence[Message],
        decode_dead: Sequence[DeadLetter],
        dead: Sequence[DeadLetter],
        accepted: int,
        stored: int,
        exceedances: Sequence[Exceedance],
        opened: int,
    ) -> None:
        metrics.MESSAGES.labels(Kind.WALKTHROUGH.value).inc(len(messages))
        metrics.READINGS.labels(Kind.WALKTHROUGH.value, "stored").inc(stored)
        metrics.READINGS.labels(Kind.WALKTHROUGH.value, "duplicate").inc(accepted - stored)
        reasons: dict[str, int] = {}
        for d in dead:
            reasons[d.reason] = reasons.get(d.reason, 0) + 1
        for code, n in reasons.items():
            metrics.REJECTS.labels(code).inc(n)
        rules: dict[str, int] = {}
        for e in exceedances:
            rules[e.rule] = rules.get(e.rule, 0) + 1
        for rule, n in rules.items():
            metrics.EXCEEDANCES.labels(Kind.WALKTHROUGH.value, rule).inc(n)
        if opened:
            metrics.ALERTS_OPENED.labels(Kind.WALKTHROUGH.value).inc(opened)


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
