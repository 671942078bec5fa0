"""Applies ``migrations/NNNN_*.sql`` in order, once each, under an advisory lock.

A file whose first line is ``-- requires: timescaledb`` runs only where the extension is
available; on plain PostgreSQL it stays pending and runs the first time TimescaleDB is there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from telemetry.errors import TelemetryError

__all__ = [
    "MIGRATIONS_DIR",
    "Migration",
    "MigrationReport",
    "TimescaleDBUnavailableError",
    "load_migrations",
    "migrate",
]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_LOCK_KEY = 0x7E1E_3E7_0
_REQUIRES = "-- requires:"


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    requires: frozenset[str]

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class MigrationReport:
    applied: list[str]
    pending: list[str]
    timescaledb: bool


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        requires: frozenset[str] = frozenset()
        if first and first[0].startswith(_REQUIRES):
            requires = frozenset(x.strip() for x in first[0][len(_REQUIRES) :].split(","))
        migrations.append(Migration(path.stem, path, requires))
    if not migrations:
        raise FileNotFoundError(f"no migrations found in {directory}")
    return migrations


class TimescaleDBUnavailableError(TelemetryError):
    """``TELEMETRY_TIMESCALEDB=require`` but the extension cannot be enabled."""


# The extension ``migrate`` enables; a module attribute so that a test can point the same code
# path at an extension this machine has (TimescaleDB is not installable everywhere).
_EXTENSION = "timescaledb"

_HOW_TO_FIX = (
    "To use TimescaleDB, set shared_preload_libraries = 'timescaledb' in postgresql.conf, restart "
    "PostgreSQL and run `telemetry migrate` again; to run on plain PostgreSQL without trying, "
    "set TELEMETRY_TIMESCALEDB=off."
)


class _NotEnabled(Exception):
    """The server refused the extension; ``reason`` is what it said."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _enable_timescaledb(conn: asyncpg.Connection) -> bool:
    """Enable the extension on ``conn``: False if the server does not have it at all, and
    ``_NotEnabled`` if it has it but refuses it (``conn`` is unusable afterwards)."""
    available = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)", _EXTENSION
    )
    if not available:
        return False
    try:
        await conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{_EXTENSION}"')
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # TimescaleDB installed but not in shared_preload_libraries raises FATAL ("must be
        # preloaded"): the server ends the session, so the error arrives as a closed connection.
        raise _NotEnabled(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    return True


async def _connect_locked(dsn: str) -> asyncpg.Connection:
    """A connection holding the migration lock; closing it (or losing it) releases the lock."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    except BaseException:
        conn.terminate()
        raise
    return conn


async def migrate(
    dsn: str, *, timescaledb: str = "auto", directory: Path = MIGRATIONS_DIR
) -> MigrationReport:
    """Bring the database at ``dsn`` up to date. ``timescaledb`` is auto, require or off.

    Raises ``TimescaleDBUnavailableError`` when it is ``require`` and the extension cannot be
    enabled; with ``auto`` that is one warning and the TimescaleDB migrations stay pending."""
    migrations = load_migrations(directory)
    conn = await _connect_locked(dsn)
    try:
        has_timescale = False
        if timescaledb != "off":
            try:
                has_timescale = await _enable_timescaledb(conn)
            except _NotEnabled as exc:
                # The attempt's session is gone or half-loaded: carry on in a fresh one, which
                # takes the lock again and re-reads what is applied.
                conn.terminate()
                if timescaledb == "require":
                    raise TimescaleDBUnavailableError(
                        "TELEMETRY_TIMESCALEDB=require, but the server has the timescaledb "
                        f"extension and refused to enable it ({exc.reason}). {_HOW_TO_FIX}"
                    ) from exc
                log.warning(
                    "the server has the timescaledb extension but refused to enable it (%s); "
                    "continuing on plain PostgreSQL, the TimescaleDB migrations stay pending. %s",
                    exc.reason,
                    _HOW_TO_FIX,
                )
                conn = await _connect_locked(dsn)
            else:
                if not has_timescale and timescaledb == "require":
                    raise TimescaleDBUnavailableError(
                        "TELEMETRY_TIMESCALEDB=require, but the server does not have the "
                        "timescaledb extension installed; install it, or set "
                        "TELEMETRY_TIMESCALEDB=auto to run on plain PostgreSQL."
                    )
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied, pending = [], []
        for migration in migrations:
            if migration.version in done:
                continue
            if "timescaledb" in migration.requires and not has_timescale:
                pending.append(migration.version)
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
            applied.append(migration.version)
            log.info("applied migration %s", migration.version)
        return MigrationReport(applied, pending, has_timescale)
    finally:
        # Ending the session releases the advisory lock with it.
        await conn.close()
