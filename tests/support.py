"""Helpers shared by the tests that run the service against the real broker and database."""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher

from api.app import create_app
from telemetry.accounts.passwords import generate_token, token_digest
from telemetry.accounts.repository import insert_token
from telemetry.settings import Settings

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


def publish(
    broker: Any, topic: str, payloads: list[str | bytes], *, options: tuple[str, ...] = ()
) -> None:
    """Publish each payload as one QoS 1 message with mosquitto_pub, a client we did not write
    (``options`` are more mosquitto_pub arguments)."""
    target = ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic]
    target += ["-u", broker.username, "-P", broker.password]
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


#: The password of every account the tests create with :func:`grant_token`.
TEST_PASSWORD = "tests-only password 0007"


@functools.cache
def _test_password_hash() -> str:
    # Hashed once per process: argon2 is slow on purpose.
    return PasswordHasher().hash(TEST_PASSWORD)


async def grant_token(database_url: str, role: str = "admin", name: str | None = None) -> str:
    """A fresh bearer token of the account ``name`` (default ``test-<role>``), which is made
    with ``role`` and :data:`TEST_PASSWORD` if it does not exist; straight in the database,
    without logging in."""
    name = name or f"test-{role}"
    conn = await asyncpg.connect(database_url)
    try:
        account_id = await conn.fetchval(
            "INSERT INTO accounts (name, role, password_hash) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET role = accounts.role RETURNING id",
            name,
            role,
            _test_password_hash(),
        )
        token = generate_token()
        await insert_token(conn, account_id, token_digest(token), ttl_s=3600, client="tests")
    finally:
        await conn.close()
    return token


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def api_client(
    settings: Settings, *, role: str | None = "admin"
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app built for ``settings``, with its lifespan running, sending
    the token of a ``test-<role>`` account (none when ``role`` is None, or when the database
    cannot be reached: then the app answers 503 before it checks tokens)."""
    headers = {}
    if role is not None:
        with suppress(OSError, asyncpg.InvalidCatalogNameError):
            headers = bearer(await grant_token(settings.database_url, role))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as client:
            yield client
