"""The micro-batcher: batches of at most ``max_rows``, in arrival order, acknowledged only
after their flush, and what a full batch leaves behind goes next without waiting its age."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from telemetry.ingest.batcher import Batcher
from telemetry.kinds.contract import Message


async def test_a_backlog_goes_as_batches_of_at_most_max_rows_in_order() -> None:
    flushed: list[list[int]] = []
    acknowledged: list[list[Any]] = []
    done = asyncio.Event()

    async def flush(messages: Sequence[Message]) -> None:
        flushed.append([m.received_us for m in messages])

    def acknowledge(tokens: Sequence[Any]) -> None:
        acknowledged.append(list(tokens))
        if sum(map(len, acknowledged)) == 12:
            done.set()

    # An hour's age: only the row limit, or what a full batch left behind, can flush here.
    batcher = Batcher(flush, acknowledge, max_rows=5, max_age_s=3600.0)
    for i in range(12):  # a backlog, all there before the batcher first runs
        assert batcher.add(Message("telemetry/walkthrough/v", b"{}", i), ("token", i))
    batcher.start()
    await asyncio.wait_for(done.wait(), 30)
    assert flushed == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert acknowledged == [[("token", i) for i in batch] for batch in flushed]
    assert batcher.depth == 0
    await batcher.close(drain_s=5)


async def test_a_failed_flush_acknowledges_nothing() -> None:
    acknowledged: list[Any] = []

    async def flush(messages: Sequence[Message]) -> None:
        raise RuntimeError("database gone")

    batcher = Batcher(flush, acknowledged.extend, max_rows=2, max_age_s=3600.0)
    batcher.add(Message("telemetry/walkthrough/v", b"{}", 1), 1)
    batcher.add(Message("telemetry/walkthrough/v", b"{}", 2), 2)
    batcher.start()
    task = batcher.task
    assert task is not None
    await asyncio.wait([task], timeout=30)
    assert task.done() and isinstance(task.exception(), RuntimeError)
    assert acknowledged == []
