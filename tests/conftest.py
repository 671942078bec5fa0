"""Real services for the tests: a fresh PostgreSQL database per test (cloned from a migrated
template) and the project's own Mosquitto on a free port, with the project's configuration."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
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

from telemetry.broker.passwords import hash_password
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
    """An HTTP client of the app for ``settings``, its lifespan running, authenticated as an
    admin (account ``test-admin``)."""
    async with api_client(settings) as c:
        yield c


@pytest.fixture
async def officer_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, on the same database, as an officer (account ``test-officer``)."""
    async with api_client(settings, role="officer") as c:
        yield c


@pytest.fixture
async def viewer_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, on the same database, as a viewer (account ``test-viewer``)."""
    async with api_client(settings, role="viewer") as c:
        yield c


@pytest.fixture
async def anonymous_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, on the same database, without a token."""
    async with api_client(settings, role=None) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The tests' own client account beside the ingest account: it may publish anywhere under the
# telemetry tree (topics outside the contract included) and read it, so that tests of ingest
# can publish as any vehicle. Vehicles' own accounts are tested in test_broker_accounts.py.
TEST_CLIENT = "test-client"
TEST_CLIENT_PASSWORD = secrets.token_urlsafe(24)
INGEST_USERNAME = "telemetry-ingest"
INGEST_PASSWORD = secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Broker:
    """A broker started by `telemetry broker run`: ``url`` carries the test client's account,
    ``ingest_url`` the ingest service's; ``database_url`` holds its vehicle accounts."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    database_url: str
    state_dir: Path
    username: str = TEST_CLIENT
    password: str = TEST_CLIENT_PASSWORD

    @property
    def url(self) -> str:
        return f"mqtt://{self.username}:{self.password}@{self.host}:{self.port}"

    @property
    def ingest_url(self) -> str:
        return f"mqtt://{INGEST_USERNAME}:{INGEST_PASSWORD}@{self.host}:{self.port}"

    @property
    def plain_url(self) -> str:
        """The address without an account."""
        return f"mqtt://{self.host}:{self.port}"


def start_broker(workdir: Path, port: int | None = None, *, database_url: str) -> Broker:
    """Start the project's broker (`telemetry broker run`, deploy/mosquitto/mosquitto.conf) on a
    free loopback port, its vehicle accounts in ``database_url``."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    hashed = hash_password(TEST_CLIENT_PASSWORD)
    (workdir / "test-passwords").write_text(f"{TEST_CLIENT}:{hashed.mosquitto()}\n")
    (workdir / "test-acl").write_text(f"user {TEST_CLIENT}\ntopic readwrite telemetry/#\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env |= {
        "TELEMETRY_DATABASE_URL": database_url,
        "TELEMETRY_MQTT_USERNAME": INGEST_USERNAME,
        "TELEMETRY_MQTT_PASSWORD": INGEST_PASSWORD,
    }
    command = [
        sys.executable, "-m", "telemetry", "broker", "run", "--port", str(port),
        "--state-dir", str(workdir / "state"),
        "--extra-passwords", str(workdir / "test-passwords"),
        "--extra-acl", str(workdir / "test-acl"),
    ]  # fmt: skip
    with (workdir / "broker.log").open("ab") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Broker("127.0.0.1", port, proc, database_url, workdir / "state")
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the broker did not start; see {workdir}/broker.log")


@pytest.fixture(scope="session")
def broker_database(template_db: str) -> Iterator[str]:
    """A migrated database for the brokers' vehicle accounts, for the whole session."""
    name = f"telemetry_broker_{uuid.uuid4().hex[:8]}"
    asyncio.run(_clone(template_db, name))
    yield _url_for(name)
    asyncio.run(_drop(name))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, broker_database: str) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("mosquitto"), database_url=broker_database)
    yield b
    b.process.terminate()
    b.process.wait(timeout=10)
