"""Real services for the tests: a fresh PostgreSQL database per test (cloned from a migrated
template) and the project's own Mosquitto on a free port, with the project's configuration."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from support import api_client

from telemetry.db import create_pool
from telemetry.migrate import migrate
from telemetry.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "TELEMETRY_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _url_for(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _drop(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _disconnect_all(conn: asyncpg.Connection, name: str) -> None:
    """End every other session on database ``name``, waiting up to 5 s for each to exit."""
    await conn.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )


async def _clone(template: str, name: str) -> None:
    """CREATE DATABASE ``name`` TEMPLATE ``template``, which needs the template to have no
    other session, retrying briefly while one still does."""
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        for attempt in range(5):
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return
            except asyncpg.ObjectInUseError:
                # "source database is being accessed by other users": a session that attached
                # before the template was closed to connections (a TimescaleDB scheduler).
                # CREATE DATABASE has already waited 5 s for it; end it and try again.
                if attempt == 4:
                    raise
                await _disconnect_all(conn, template)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A migrated database that every test's database is cloned from."""
    name = f"telemetry_tmpl_{uuid.uuid4().hex[:8]}"

    async def setup() -> None:
        await _admin(f'CREATE DATABASE "{name}"')
        await migrate(_url_for(name))
        # TimescaleDB's background scheduler connects to every database with the extension,
        # and CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template
        # (timescaledb issue 4048). Closed to connections, nothing new can attach to it; a
        # database that allows no connections can still be cloned and dropped.
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await _disconnect_all(conn, name)
        finally:
            await conn.close()

    asyncio.run(setup())
    yield name
    asyncio.run(_drop(name))


@pytest.fixture
def database_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    name = f"telemetry_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_clone(template_db, name))
    yield _url_for(name)
    asyncio.run(_drop(name))


@pytest.fixture
def clone_database() -> Callable[[str, str], Awaitable[None]]:
    """The coroutine function ``database_url`` clones the template with, for tests of it."""
    return _clone


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A fresh database with nothing in it (not migrated); dropped afterwards."""
    name = f"telemetry_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield _url_for(name)
    asyncio.run(_drop(name))


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for an API without its own ingest worker; a test module overrides this
    fixture when it needs others."""
    return Settings(database_url=database_url, ingest_enabled=False)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app for ``settings``, its lifespan running."""
    async with api_client(settings) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def start_broker(workdir: Path, port: int | None = None) -> Broker:
    """Start Mosquitto with deploy/mosquitto/mosquitto.conf on a free loopback port."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    base = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    conf = base.replace("listener 1883", f"listener {port} 127.0.0.1")
    # Started as root, Mosquitto drops to the mosquitto user, which cannot write into pytest's
    # private temporary directory; "user" keeps the account it was started with.
    conf += f"\npersistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n"
    if os.geteuid() == 0:
        conf += "user root\n"
    (workdir / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([exe, "-c", str(workdir / "mosquitto.conf")])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Broker("127.0.0.1", port, proc)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"mosquitto did not start; see {workdir}/mosquitto.log")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.process.terminate()
    b.process.wait(timeout=10)
