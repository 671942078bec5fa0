"""``telemetry broker run``: Mosquitto as a child process whose accounts follow PostgreSQL.

The runner writes Mosquitto's configuration, password file and ACL file from the project's
shared configuration and table ``vehicle_accounts``, starts Mosquitto in the foreground, and
from then on re-reads the table whenever it changes (LISTEN/NOTIFY, and every
``_REFRESH_S`` in case a notification was missed while the database was away). When the
accounts changed it rewrites the files and sends Mosquitto SIGHUP: Mosquitto reloads them,
disconnects clients whose account is gone, and applies the new ACL to everyone still
connected. SIGTERM and SIGINT are passed on; the runner exits with Mosquitto's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from telemetry.broker import repository
from telemetry.broker.config import (
    BASE_CONFIG,
    Listeners,
    ServiceAccount,
    render_acl,
    render_config,
    render_passwords,
)
from telemetry.broker.passwords import hash_password
from telemetry.errors import UnavailableError, ValidationError
from telemetry.settings import Settings

__all__ = ["BrokerOptions", "run_broker"]

log = logging.getLogger(__name__)

_REFRESH_S = 30.0
_CONNECT_FOR_S = 60.0  # at start: the database may still be starting beside the broker


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """How ``telemetry broker run`` was asked to run the broker."""

    listeners: Listeners
    state_dir: Path
    base_config: Path = BASE_CONFIG
    extra_passwords: Path | None = None
    extra_acl: Path | None = None
    mosquitto: str | None = None


def _service_accounts(settings: Settings) -> list[ServiceAccount]:
    endpoint = settings.mqtt
    if not endpoint.username or not endpoint.password:
        raise ValidationError(
            "the broker needs the ingest service's account: set TELEMETRY_MQTT_USERNAME and "
            "TELEMETRY_MQTT_PASSWORD"
        )
    # Subscribing to the tree covers the shared form too: Mosquitto checks a message of a
    # $share/<group>/... subscription against the topic it was published to.
    acl = (f"topic read {settings.mqtt_topic_prefix}/#",)
    return [ServiceAccount(endpoint.username, hash_password(endpoint.password), acl)]


def _usernames(password_file_text: str) -> set[str]:
    return {line.split(":", 1)[0] for line in password_file_text.splitlines() if ":" in line}


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically, readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class _Accounts:
    """Renders the password and ACL files from the table, and tells whether they changed."""

    def __init__(self, settings: Settings, options: BrokerOptions) -> None:
        self._settings = settings
        self._options = options
        self._services = _service_accounts(settings)
        self._extra_passwords = (
            options.extra_passwords.read_text() if options.extra_passwords else ""
        )
        self._extra_acl = options.extra_acl.read_text() if options.extra_acl else ""
        self._reserved = {s.username for s in self._services} | _usernames(self._extra_passwords)
        self._written: tuple[str, str] | None = None

    async def write(self, conn: asyncpg.Connection) -> bool:
        """Write the files from the table; True if they changed."""
        vehicles = []
        for c in await repository.enabled_credentials(conn):
            if c.vehicle_id in self._reserved:
                log.error("vehicle %r has the name of a service account; ignored", c.vehicle_id)
            else:
                vehicles.append(c)
        files = (
            render_passwords(self._services, vehicles, self._extra_passwords),
            render_acl(self._services, vehicles, self._settings.mqtt_topic_prefix, self._extra_acl),
        )
        if files == self._written:
            return False
        state = self._options.state_dir
        _write(state / "passwords", files[0])
        _write(state / "acl", files[1])
        self._written = files
        log.info("broker accounts: %d vehicles enabled", len(vehicles))
        return True


async def _connect(dsn: str, within_s: float) -> asyncpg.Connection:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise UnavailableError(f"cannot reach the database for the broker: {exc}") from exc
            log.warning("database not reachable yet (%s); retrying", exc)
            await asyncio.sleep(1.0)


def _prepare(settings: Settings, options: BrokerOptions) -> tuple[str, Path, _Accounts]:
    exe = options.mosquitto or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise UnavailableError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    state = options.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    conf = state / "mosquitto.conf"
    _write(conf, render_config(options.base_config.read_text(), options.listeners, state))
    return exe, conf, _Accounts(settings, options)


async def run_broker(settings: Settings, options: BrokerOptions) -> int:
    """Run Mosquitto until it exits (or is told to); returns the status to exit with."""
    exe, conf, accounts = await asyncio.to_thread(_prepare, settings, options)
    changed = asyncio.Event()

    def on_notify(*_: object) -> None:
        changed.set()

    conn = await _connect(settings.database_url, _CONNECT_FOR_S)
    await conn.add_listener(repository.CHANNEL, on_notify)
    await accounts.write(conn)

    child = await asyncio.create_subprocess_exec(exe, "-c", str(conf))
    log.info(
        "mosquitto started (pid %d) on %s:%d", child.pid, options.listeners.bind,
        options.listeners.port,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, child.send_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, changed.set)
    exited = asyncio.create_task(child.wait())
    try:
        while not exited.done():
            woken = asyncio.create_task(changed.wait())
            await asyncio.wait({exited, woken}, timeout=_REFRESH_S, return_when="FIRST_COMPLETED")
            woken.cancel()
            if exited.done():
                break
            changed.clear()
            try:
                if conn.is_closed():
                    conn = await _connect(settings.database_url, 5.0)
                    await conn.add_listener(repository.CHANNEL, on_notify)
                if await accounts.write(conn):
                    child.send_signal(signal.SIGHUP)
            except (
                OSError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                UnavailableError,
            ) as exc:
                # Keep serving with the accounts last written; try again at the next tick.
                log.warning("cannot refresh broker accounts: %s", exc)
                with contextlib.suppress(Exception):
                    conn.terminate()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if not exited.done():
            child.terminate()
        status = await exited
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 5)
    log.info("mosquitto exited with status %d", status)
    return status if status >= 0 else 128 - status
