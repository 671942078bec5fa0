"""Helpers shared by the tests that run the service against the real broker and database."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from api.app import create_app
from telemetry.settings import Settings

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


def publish(
    broker: Any, topic: str, payloads: list[str | bytes], *, options: tuple[str, ...] = ()
) -> None:
    """Publish each payload as one QoS 1 message with mosquitto_pub, a client we did not write
    (``options`` are more mosquitto_pub arguments)."""
    target = ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic]
    for payload in payloads:
        data = payload if isinstance(payload, bytes) else payload.encode()
        subprocess.run([MOSQUITTO_PUB, *target, *options, "-s"], input=data, check=True, timeout=10)


async def eventually(check: Callable[[], Awaitable[Any]], *, within_s: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within_s``. (A bound on
    waiting for the system under test, not an assertion about its speed.)"""
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within_s} s (last result: {result!r})")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app built for ``settings``, with its lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client
