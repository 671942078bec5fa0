"""What the benchmarks share: a scratch database with the demo roads, the project's broker on a
free loopback port, the service as a child process, simulated vehicle accounts, and CPU and
memory read from ``/proc``.

Everything here drives the service from outside (processes, MQTT, the database), so it measures
whatever ingest implementation the tree holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from simulators.accounts import register_vehicles
from simulators.publisher import Publisher, PublishError
from telemetry.db import ensure_database
from telemetry.kinds.contract import Kind
from telemetry.migrate import migrate
from telemetry.settings import MqttEndpoint, Settings

__all__ = [
    "DEFAULT_ADMIN_URL",
    "ROOT",
    "BackendCpu",
    "Stack",
    "cpu_s",
    "free_port",
    "machine_load",
    "quiet_clients",
    "register_accounts",
    "rss_mb",
    "scratch_stack",
    "start_service",
    "stop_service",
]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = os.environ.get(
    "TELEMETRY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
HARNESS_APP = "bench-harness"  # application_name of the harness's own connections
_ACCOUNT_WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiet_clients() -> None:
    """Only errors from the harness's own MQTT clients: a refused first connection while the
    broker loads new accounts, and a disconnect at the end, are expected."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)


def machine_load() -> str:
    """The 1, 5 and 15 minute load averages: what else shared the cores."""
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def rss_mb(pid: int) -> float:
    """Resident set size of a process (Linux /proc), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Stack:
    """A scratch database and a private broker; ``env`` runs ``telemetry`` against both."""

    admin_url: str
    name: str
    database_url: str
    workdir: Path
    env: dict[str, str]
    port: int = 0
    broker_pid: int = 0
    broker: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> Settings:
        return Settings(database_url=self.database_url, mqtt_url=self.env["TELEMETRY_MQTT_URL"])

    @property
    def service_endpoint(self) -> MqttEndpoint:
        endpoint = MqttEndpoint(self.env["TELEMETRY_MQTT_URL"])
        endpoint.username = self.env["TELEMETRY_MQTT_USERNAME"]
        endpoint.password = self.env["TELEMETRY_MQTT_PASSWORD"]
        return endpoint


def _telemetry(*args: str) -> list[str]:
    return [sys.executable, "-m", "telemetry", *args]


def _start_broker(stack: Stack) -> None:
    """`telemetry broker run` on a free loopback port (authentication on)."""
    port = free_port()
    state = stack.workdir / "broker"
    with (stack.workdir / "broker.log").open("wb") as log:
        proc = subprocess.Popen(
            _telemetry("broker", "run", "--port", str(port), "--state-dir", str(state)),
            env=stack.env, stdout=log, stderr=log,
        )  # fmt: skip
    stack.broker = proc
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            stack.port, stack.broker_pid = port, int((state / "mosquitto.pid").read_text())
            stack.env["TELEMETRY_MQTT_URL"] = f"mqtt://127.0.0.1:{port}"
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the broker did not start; see {stack.workdir}/broker.log")


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _prepare(url: str) -> None:
    await ensure_database(url)
    await migrate(url)


@contextlib.contextmanager
def scratch_stack(admin_url: str, *, label: str = "bench") -> Iterator[Stack]:
    """A new database (migrated, demo roads imported) and the project's broker; both are
    removed on exit."""
    name = f"telemetry_{label}_{uuid.uuid4().hex[:8]}"
    database_url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    env = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": database_url,
        "TELEMETRY_MQTT_USERNAME": f"{label}-service",
        "TELEMETRY_MQTT_PASSWORD": secrets.token_urlsafe(24),
        "TELEMETRY_MQTT_CLIENT_ID": f"{label}-service",
        "TELEMETRY_MQTT_URL": "mqtt://127.0.0.1:1",
    }
    stack = Stack(admin_url, name, database_url, Path(tempfile.mkdtemp(prefix=f"{label}-")), env)
    try:
        asyncio.run(_prepare(database_url))
        _start_broker(stack)
        subprocess.run(
            _telemetry("roads", "import", str(ROOT / "data/roads/demo.geojson")),
            env=stack.env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        yield stack
    finally:
        if stack.broker is not None:
            stack.broker.terminate()
            stack.broker.wait(timeout=10)
        asyncio.run(_drop(admin_url, name))
        shutil.rmtree(stack.workdir, ignore_errors=True)


def start_service(
    stack: Stack, command: str = "ingest", log_name: str = "service"
) -> subprocess.Popen[bytes]:
    """``telemetry ingest`` (or ``serve``, on a free HTTP port) against the stack."""
    env = {**stack.env, "TELEMETRY_HTTP_PORT": str(free_port())}
    with (stack.workdir / f"{log_name}.log").open("ab") as log:
        return subprocess.Popen(_telemetry(command), env=env, stdout=log, stderr=log)


def stop_service(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def register_accounts(settings: Settings, vehicle_ids: Sequence[str]) -> dict[str, str]:
    """Register simulated vehicle accounts and wait until the broker accepts the last one."""
    passwords = await register_vehicles(settings, [(v, Kind.WALKTHROUGH) for v in vehicle_ids])
    last = vehicle_ids[-1]
    endpoint = MqttEndpoint(settings.mqtt_url)
    endpoint.username, endpoint.password = last, passwords[last]
    deadline = time.monotonic() + _ACCOUNT_WAIT_S
    while True:
        try:
            async with Publisher(endpoint, f"{last}-check", session_expiry_s=0):
                return passwords
        except PublishError as exc:
            if not exc.refused or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


@dataclass
class BackendCpu:
    """CPU of the PostgreSQL backends serving one database, other than the harness's own.

    Backends are found in ``pg_stat_activity`` at each :meth:`sample`; one that connects and
    exits between two samples is missed (the service's pool keeps its connections).
    """

    database: str
    start: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)

    async def _pids(self, conn: asyncpg.Connection) -> list[int]:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = "
            "'client backend' AND application_name <> $2",
            self.database,
            HARNESS_APP,
        )
        return [int(r["pid"]) for r in rows]

    async def sample(self, conn: asyncpg.Connection) -> None:
        """Read the backends' CPU; those first seen after the first sample started during the
        run, so all their CPU counts."""
        first = not self.last
        for pid in await self._pids(conn):
            with contextlib.suppress(OSError):
                now = cpu_s(pid)
                self.start.setdefault(pid, now if first else 0.0)
                self.last[pid] = now

    def used_s(self) -> float:
        return sum(self.last[pid] - self.start.get(pid, 0.0) for pid in self.last)


async def harness_connection(database_url: str) -> asyncpg.Connection:
    """A connection the CPU accounting leaves out."""
    return await asyncpg.connect(database_url, server_settings={"application_name": HARNESS_APP})
