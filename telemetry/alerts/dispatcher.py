"""The webhook dispatcher: sends due deliveries, records each attempt, schedules retries.

It runs in every API process (``api.app``'s lifespan starts and stops it). Deliveries are
rows (migrations/0015_webhooks.sql), written with the transition they announce, so a restart
loses none; each process claims due rows with ``FOR UPDATE SKIP LOCKED`` and a lease, so
several processes share the work without sending an attempt twice. A process that dies during
an attempt leaves its rows due again once the lease runs out: delivery is at least once, and
the event id header lets a receiver drop a repeat.

Every ``webhook_poll_s`` it claims up to ``webhook_concurrency`` due deliveries and sends them
at once (one ``httpx.AsyncClient``, each request bounded by ``webhook_timeout_s``), then
records the results. A full claim is followed by the next at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from telemetry import metrics
from telemetry.alerts.webhooks import Outcome, backoff_s, delivery_headers, event_body, judge
from telemetry.settings import Settings
from telemetry.store import webhooks as store

__all__ = ["WebhookDispatcher"]

log = logging.getLogger(__name__)

#: The longest an error text kept on a delivery may be.
ERROR_CHARS = 500
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class WebhookDispatcher:
    """Delivers webhooks from the pool that ``pool_of`` answers (None while the database is
    unreachable: the dispatcher waits). ``draw`` is the jitter's random source."""

    def __init__(
        self,
        settings: Settings,
        pool_of: Callable[[], asyncpg.Pool | None],
        *,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._pool_of = pool_of
        self._draw = draw
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._failing: str | None = None  # the database error of the last poll

    def start(self) -> None:
        """Start delivering in the background."""
        settings = self._settings
        self._http = httpx.AsyncClient(
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
            headers={"User-Agent": "vehicle-telemetry-webhooks"},
            limits=httpx.Limits(max_connections=settings.webhook_concurrency),
        )
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")
        self._task.add_done_callback(_report_death)

    async def stop(self) -> None:
        """Stop: an attempt in flight is abandoned and becomes due again after its lease."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _run(self) -> None:
        while True:
            full = False
            pool = self._pool_of()
            if pool is not None:
                try:
                    full = await self.deliver_due(pool)
                    self._failing = None
                except _DB_ERRORS as exc:
                    # Logged when it starts, not every poll while the database stays away.
                    if (why := f"{type(exc).__name__}: {exc}") != self._failing:
                        log.warning("webhooks: %s; trying again every poll", why)
                    self._failing = why
            if not full:
                await asyncio.sleep(self._settings.webhook_poll_s)

    async def deliver_due(self, pool: asyncpg.Pool) -> bool:
        """One round: claim, send and record; whether the claim was full (more may be due)."""
        settings = self._settings
        # An attempt ends within the timeout; the lease leaves room for recording it.
        lease_s = 2 * settings.webhook_timeout_s + settings.webhook_poll_s
        claimed = await store.claim_due(pool, limit=settings.webhook_concurrency, lease_s=lease_s)
        if not claimed:
            return False
        results = await asyncio.gather(*(self._attempt(row) for row in claimed))
        for row, (http_status, error) in zip(claimed, results, strict=True):
            await self._record(pool, row, http_status, error)
        return len(claimed) == settings.webhook_concurrency

    async def _attempt(self, row: dict[str, Any]) -> tuple[int | None, str | None]:
        """POST one delivery: the receiver's status (None without an answer) and an error."""
        assert self._http is not None
        body = event_body({k: row[k] for k in store.EVENT_COLUMNS})
        headers = delivery_headers(row["secret"], row["id"], int(time.time()), body)
        timeout_s = self._settings.webhook_timeout_s
        try:
            # httpx bounds each phase (connect, write, read); this bounds the whole attempt.
            async with asyncio.timeout(timeout_s):
                response = await self._http.post(row["url"], content=body, headers=headers)
        except TimeoutError:
            return None, f"no answer within {timeout_s:g} s"
        except httpx.HTTPError as exc:
            return None, _error_text(f"{type(exc).__name__}: {exc or 'no answer'}")
        if 200 <= response.status_code < 300:
            return response.status_code, None
        reason = response.reason_phrase or "error"
        return response.status_code, _error_text(f"HTTP {response.status_code} {reason}")

    async def _record(
        self, pool: asyncpg.Pool, row: dict[str, Any], http_status: int | None, error: str | None
    ) -> None:
        settings = self._settings
        outcome = judge(
            http_status,
            attempts=row["attempts"],
            age_s=row["age_s"],
            max_attempts=settings.webhook_max_attempts,
            max_age_s=settings.webhook_max_age_s,
        )
        wait_s = None
        if outcome is Outcome.RETRY:
            wait_s = backoff_s(
                row["attempts"],
                first_s=settings.webhook_backoff_first_s,
                max_s=settings.webhook_backoff_max_s,
                jitter=settings.webhook_backoff_jitter,
                draw=self._draw(),
            )
        elif outcome is Outcome.FAILED:
            log.warning(
                "webhook %d: event %d failed after %d attempts: %s",
                row["webhook_id"],
                row["id"],
                row["attempts"],
                error,
            )
        metrics.WEBHOOK_ATTEMPTS.labels(outcome=outcome.value).inc()
        await store.record_attempt(
            pool,
            delivery_id=row["delivery_id"],
            webhook_id=row["webhook_id"],
            status="pending" if outcome is Outcome.RETRY else outcome.value,
            http_status=http_status,
            error=error,
            retry_in_s=wait_s,
        )


def _report_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("webhook dispatcher stopped: nothing is delivered by this process", exc_info=exc)


def _error_text(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"
