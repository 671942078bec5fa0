"""Micro-batching between the MQTT client and the database.

Every message handler awaits the commit of the batch holding its message; the client sends
PUBACK only when that await returns. A batch is flushed when it reaches ``max_rows`` messages
or its oldest message is ``max_age_s`` old. Intake is bounded upstream by the MQTT v5 Receive
Maximum: the broker never has more unacknowledged messages in flight to us than that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from telemetry.ingest.decode import Message
from telemetry.ingest.metrics import QUEUE_DEPTH

__all__ = ["Batcher", "BatcherClosed"]

log = logging.getLogger(__name__)

Flush = Callable[[Sequence[Message]], Awaitable[None]]


class BatcherClosed(RuntimeError):
    """The batcher is shutting down; the message stays unacknowledged and is redelivered."""


class Batcher:
    """Collects messages and hands them to ``flush`` one batch at a time, in arrival order."""

    def __init__(self, flush: Flush, *, max_rows: int, max_age_s: float) -> None:
        self._flush = flush
        self._max_rows = max_rows
        self._max_age_s = max_age_s
        self._pending: list[Message] = []
        self._done: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

    async def submit(self, message: Message) -> None:
        """Queue ``message``; return once the batch holding it has committed."""
        if self._closed:
            raise BatcherClosed("ingest is shutting down")
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        done = self._done
        self._pending.append(message)
        if len(self._pending) == 1 or len(self._pending) >= self._max_rows:
            self._wake.set()
        await asyncio.shield(done)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closed:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            # Wait for the batch to fill or age, measured from its first message's arrival.
            deadline = loop.time() + self._max_age_s
            while len(self._pending) < self._max_rows and not self._closed:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
                self._wake.clear()
            batch, done = self._pending, self._done
            self._pending, self._done = [], None
            QUEUE_DEPTH.set(len(batch))
            try:
                await self._flush(batch)
            except BaseException as exc:
                # Not committed: the handlers fail, so no PUBACK is sent and the broker
                # redelivers these messages when the session resumes.
                if done is not None and not done.done():
                    done.set_exception(BatcherClosed(f"batch not committed: {exc!r}"))
                    done.exception()  # retrieved: handlers may already be gone
                raise
            else:
                if done is not None and not done.done():
                    done.set_result(None)
            finally:
                QUEUE_DEPTH.set(len(self._pending))
            if self._pending:
                self._wake.set()

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
                "batch not committed within %.1f s of shutdown; it will be redelivered", drain_s
            )
            self._task.cancel()
        except Exception:
            log.exception("batcher stopped with an error")
        if self._done is not None and not self._done.done():
            self._done.set_exception(BatcherClosed("ingest stopped before commit"))
            self._done.exception()
