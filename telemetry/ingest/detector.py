"""The detector every ingest worker runs beside its batch path (docs/adr/0011).

Workers store what they receive and acknowledge it; they keep no per-vehicle state. Detection
that needs a vehicle's readings in measurement order runs here instead, per vehicle partition,
on committed rows read back from the database, so it comes out the same however the broker
spreads a vehicle's messages over the workers:

- every tick the worker publishes its **low watermark**: the arrival time of its oldest
  message received and not yet committed (its clock when it holds none);
- the **horizon** is the lowest watermark of the live workers minus the clock margin: every
  row that arrived before it is committed, wherever it was received;
- the worker holds some partitions on **leases** (an even share of the live workers, claimed
  and released every ``detect_rebalance_s``); a tick renews and locks them in its transaction
  (the fence), hands each :class:`~telemetry.kinds.contract.OrderedDetector` kind the window
  (since, horizon] of every partition, records the exceedances as alert episodes and moves the
  partitions' ``judged_through`` to the horizon — all in that one transaction.

A tick runs every ``detect_tick_s`` and, besides, as soon as the worker's own batch commits
(:meth:`Detector.wake`, once the clock margin after its newest arrival has passed): publish →
alert then waits for the commit and one tick, not for the rest of a period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from telemetry import metrics
from telemetry.alerts.episodes import record_exceedances
from telemetry.ingest.failures import Failure, classify, describe
from telemetry.kinds.contract import DetectWindow, KindPipeline, OrderedDetector, Outcome
from telemetry.settings import Settings
from telemetry.store.leases import (
    advance_partitions,
    claim_partitions,
    ensure_partitions,
    fence,
    live_watermarks,
    publish_watermark,
    release_partitions,
    remove_watermark,
    share,
)

__all__ = ["Detector"]

log = logging.getLogger(__name__)


def _now_us() -> int:
    return time.time_ns() // 1000


class Detector:
    """Runs the ordered detection of ``pipelines`` for the partitions this worker holds.

    ``oldest_unacked_us`` tells the arrival time of the worker's oldest message received and
    not yet committed (None: none).
    """

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        pipelines: Iterable[KindPipeline[Any, Any]],
        oldest_unacked_us: Callable[[], int | None],
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._pipelines = [p for p in pipelines if isinstance(p, OrderedDetector)]
        self._oldest = oldest_unacked_us
        self.worker_id = settings.detect_worker_id or settings.mqtt_client_id
        self._count = settings.detect_partitions
        self._next_rebalance = 0.0
        self._ready = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._wake_at_us = 0

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The tick loop (None before :meth:`start`); its owner supervises it."""
        return self._task

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="detector")

    async def stop(self) -> None:
        """Stop ticking; judge what arrived up to now (and, when no other worker is live, the
        passes still in progress); give the leases up and withdraw the watermark."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.tick(stopping=True)
        except Exception as exc:
            log.warning("could not run the last detector tick: %s", describe(exc))
        try:
            async with self._pool.acquire() as conn:
                await release_partitions(conn, self.worker_id)
                await remove_watermark(conn, self.worker_id)
        except Exception as exc:
            log.warning("could not release the detection leases: %s", describe(exc))
        metrics.DETECT_PARTITIONS.set(0)

    def wake(self, newest_us: int) -> None:
        """A batch whose newest message arrived at ``newest_us`` (epoch µs) has committed:
        tick as soon as the horizon can pass it (the clock margin after it) rather than at
        the end of the period. A tick already running is followed by another one."""
        margin_us = round(self._settings.detect_clock_margin_s * 1e6)
        self._wake_at_us = max(self._wake_at_us, newest_us + margin_us + 1)
        self._wake.set()

    async def _run(self) -> None:
        period = self._settings.detect_tick_s
        while True:
            # Cleared before the tick reads the watermark: a commit during the tick wakes the
            # next one, which then sees it.
            self._wake.clear()
            started = time.monotonic()
            try:
                await self.tick()
            except Exception as exc:
                if classify(exc) is Failure.TRANSIENT:
                    log.warning("detector tick failed (%s); trying again", describe(exc))
                else:
                    # Like every periodic job: a bug or a missing migration is logged and the
                    # next tick tries again (the rows wait in the database).
                    log.exception("detector tick failed; trying again")
                await asyncio.sleep(max(period, 1.0))
                continue
            remaining = period - (time.monotonic() - started)
            if remaining > 0 and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
            if self._wake.is_set():
                early_s = (self._wake_at_us - _now_us()) / 1e6
                if early_s > 0:
                    await asyncio.sleep(min(early_s, period))

    async def tick(self, *, stopping: bool = False) -> int:
        """Publish the watermark, rebalance when due, and judge the held partitions up to the
        horizon in one fenced transaction. Returns the exceedances found."""
        s = self._settings
        now_us = _now_us()
        oldest = self._oldest()
        low_us = now_us if oldest is None else min(now_us, oldest)
        async with self._pool.acquire() as conn:
            if not self._ready:
                await ensure_partitions(conn, self._count)
                self._ready = True
            await publish_watermark(conn, self.worker_id, low_us)
            if time.monotonic() >= self._next_rebalance and not stopping:
                await self._rebalance(conn)
                self._next_rebalance = time.monotonic() + s.detect_rebalance_s
            if not self._pipelines:
                return 0
            started = time.perf_counter()
            async with conn.transaction():
                # The statements of a tick over a few thousand vehicles are priced above
                # jit_above_cost (the planner expects many rows per vehicle after its cursor):
                # at 2,000 vehicles compiling the read of their rows took 1.5 s of its 1.6 s
                # (EXPLAIN ANALYZE), longer than the tick's period; without JIT, about 50 ms.
                await conn.execute("SET LOCAL jit = off")
                parts, since = await fence(
                    conn, self.worker_id, count=self._count, lease_s=s.detect_lease_s
                )
                low, _, others = await live_watermarks(
                    conn, self.worker_id, dead_after_s=s.detect_worker_dead_s
                )
                if not parts or low is None:
                    return 0
                horizon = low - round(s.detect_clock_margin_s * 1e6)
                metrics.DETECT_HORIZON_LAG.set(max(0.0, (now_us - horizon) / 1e6))
                final = stopping and others == 0
                horizons = [max(horizon, t) for t in since]
                if not final and horizons == since:
                    return 0
                window = DetectWindow(parts, since, horizons, self._count, final=final)
                outcomes: list[tuple[KindPipeline[Any, Any], Outcome[Any]]] = []
                for kind in self._pipelines:
                    outcomes.append((kind, await kind.detect(conn, window)))
                exceedances = [e for _, o in outcomes for e in o.exceedances]
                opened = await record_exceedances(conn, exceedances)
                await advance_partitions(conn, parts, horizons)
        # Committed: count what the tick found.
        metrics.DETECT_SECONDS.observe(time.perf_counter() - started)
        for pipeline, outcome in outcomes:
            pipeline.committed(outcome)
        for e in exceedances:
            metrics.EXCEEDANCES.labels(e.kind, e.rule).inc()
        if opened:
            metrics.ALERTS_OPENED.inc(opened)
        return len(exceedances)

    async def _rebalance(self, conn: asyncpg.Connection) -> None:
        """Hold an even share of the partitions: claim free or expired ones up to it, give
        the excess up (the highest-numbered) so that a worker that joins finds some free."""
        s = self._settings
        async with conn.transaction():
            _, live, _ = await live_watermarks(
                conn, self.worker_id, dead_after_s=s.detect_worker_dead_s
            )
            target = share(self._count, live)
            held = await claim_partitions(
                conn, self.worker_id, count=self._count, lease_s=s.detect_lease_s, limit=0
            )
            if len(held) > target:
                await release_partitions(conn, self.worker_id, held[target:])
                held = held[:target]
            elif len(held) < target:
                held = await claim_partitions(
                    conn,
                    self.worker_id,
                    count=self._count,
                    lease_s=s.detect_lease_s,
                    limit=target - len(held),
                )
        metrics.DETECT_PARTITIONS.set(len(held))
