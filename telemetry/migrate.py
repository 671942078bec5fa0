"""Applies ``migrations/NNNN_*.sql`` in order, once each, under an advisory lock.

A file whose first line is ``-- requires: timescaledb`` runs only where the extension is
available; on plain PostgreSQL it stays pending and runs the first time TimescaleDB is there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

__all__ = ["MIGRATIONS_DIR", "Migration", "MigrationReport", "load_migrations", "migrate"]

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


async def _enable_timescaledb(conn: asyncpg.Connection, mode: str) -> bool:
    if mode == "off":
        return False
    available = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    )
    if not available:
        if mode == "require":
            raise RuntimeError("TELEMETRY_TIMESCALEDB=require but the extension is not available")
        return False
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as exc:
        # Installed but not in shared_preload_libraries: usable only after a server restart.
        if mode == "require":
            raise
        log.warning(
            "timescaledb is installed but cannot be enabled (%s); using plain PostgreSQL", exc
        )
        return False
    return True


async def migrate(
    dsn: str, *, timescaledb: str = "auto", directory: Path = MIGRATIONS_DIR
) -> MigrationReport:
    """Bring the database at ``dsn`` up to date. ``timescaledb`` is auto, require or off."""
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            has_timescale = await _enable_timescaledb(conn, timescaledb)
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
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
