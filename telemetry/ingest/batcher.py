"""Micro-batching between the MQTT client and the database.

Messages are added synchronously, each with an acknowledgement token. A batch is flushed when
it reaches ``max_rows`` messages (never more: what is left goes next, at once) or its first
message is ``max_age_s`` old; once ``flush`` returns (the batch has committed), its tokens are
handed to ``acknowledge``. If ``flush`` raises, nothing is acknowledged and the broker
redelivers. Intake is bounded upstream by the MQTT v5 Receive Maximum: the broker never has
more unacknowledged messages in flight to us.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telemetry.kinds.contract import Message
from telemetry.metrics import QUEUE_DEPTH

__all__ = ["Batcher"]

log = logging.getLogger(__name__)

Flush = Callable[[Sequence[Message]], Awaitable[None]]
Acknowledge = Callable[[Sequence[Any]], None]


class Batcher:
    """Collects messages and hands them to ``flush`` one batch at a time, in arrival order."""

    def __init__(
        self, flush: Flush, acknowledge: Acknowledge, *, max_rows: int, max_age_s: float
    ) -> None:
        self._flush = flush
        self._acknowledge = acknowledge
        self._max_rows = max_rows
        self._max_age_s = max_age_s
        self._pending: list[Message] = []
        self._tokens: list[Any] = []
        self._inflight: Sequence[Message] = ()  # the batch being flushed
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Messages received and not yet committed."""
        return len(self._pending)

    @property
    def oldest_received_us(self) -> int | None:
        """Arrival time (epoch µs) of the oldest message not yet acknowledged, if any."""
        # Batches are flushed in arrival order: the batch in flight holds the oldest.
        if self._inflight:
            return self._inflight[0].received_us
        if self._pending:
            return self._pending[0].received_us
        return None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The flush loop (None before :meth:`start`); its owner supervises it."""
        return self._task

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

    def add(self, message: Message, token: Any) -> bool:
        """Queue ``message``; False once closing (it stays unacknowledged and is redelivered)."""
        if self._closed:
            return False
        self._pending.append(message)
        self._tokens.append(token)
        n = len(self._pending)
        if n == 1 or n == self._max_rows:
            self._wake.set()
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carried = False  # what is pending was left by the last (full) batch: it has waited
        while True:
            if not self._pending:
                if self._closed:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            # Let the batch fill or age, measured from when its first message was seen.
            deadline = loop.time() + self._max_age_s
            while len(self._pending) < self._max_rows and not self._closed and not carried:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
                self._wake.clear()
            # At most max_rows at a time: after a stall the pending messages (up to the
            # Receive Maximum) go as several batches, so a batch's memory stays bounded.
            n = self._max_rows
            batch, tokens = self._pending[:n], self._tokens[:n]
            del self._pending[:n], self._tokens[:n]
            carried = bool(self._pending)
            QUEUE_DEPTH.set(len(batch))
            self._inflight = batch
            await self._flush(batch)
            self._acknowledge(tokens)
            self._inflight = ()
            QUEUE_DEPTH.set(len(self._pending))

    async def close(self, *, drain_s: float) -> None:
        """Stop taking messages, commit what is pending within ``drain_s``, then stop."""
        self._closed = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), drain_s)
        except TimeoutError:
            log.warning(
                "pending batch not committed within %.1f s; it will be redelivered", drain_s
            )
            self._task.cancel()
        except Exception:
            log.exception("batcher stopped with an error; uncommitted messages will be redelivered")
