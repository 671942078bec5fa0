"""``telemetry migrate`` where the server has TimescaleDB but refuses to enable it.

A server with the timescaledb package installed but not in ``shared_preload_libraries`` answers
``CREATE EXTENSION timescaledb`` with a FATAL error and closes the session. TimescaleDB cannot
be installed here, so these tests point the same code path at an extension this server does
have and close the session the same way, server-side: an event trigger on ``CREATE EXTENSION``
terminates its own backend.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import asyncpg
import pytest

from telemetry import migrate as migrate_module
from telemetry.cli import main
from telemetry.errors import TelemetryError
from telemetry.migrate import TimescaleDBUnavailableError, load_migrations, migrate

STAND_IN = "hstore"  # in PostgreSQL's contrib, so available wherever the tests run

TERMINATE_ON_CREATE_EXTENSION = """
CREATE FUNCTION terminate_on_create_extension() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_terminate_backend(pg_backend_pid());
END $$;
CREATE EVENT TRIGGER terminate_on_create_extension ON ddl_command_start
    WHEN TAG IN ('CREATE EXTENSION') EXECUTE FUNCTION terminate_on_create_extension();
"""


@pytest.fixture
async def refusing_database(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty database whose server closes the session on CREATE EXTENSION, with migrate
    enabling the stand-in extension where it would enable timescaledb."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)", STAND_IN
        )
        await conn.execute(TERMINATE_ON_CREATE_EXTENSION)
    finally:
        await conn.close()
    monkeypatch.setattr(migrate_module, "_EXTENSION", STAND_IN)
    return empty_database_url


async def _state(url: str) -> tuple[set[str], set[str], bool]:
    """(applied versions, public tables, whether the stand-in extension exists)."""
    conn = await asyncpg.connect(url)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        applied: set[str] = set()
        if "schema_migrations" in tables:
            applied = {
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            }
        extension = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)", STAND_IN
        )
        return applied, tables, bool(extension)
    finally:
        await conn.close()


def _split_migrations() -> tuple[list[str], list[str]]:
    plain, timescale = [], []
    for m in load_migrations():
        (timescale if "timescaledb" in m.requires else plain).append(m.version)
    return plain, timescale


async def test_session_closed_by_the_server_on_create_extension_falls_back_to_plain_postgresql(
    refusing_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="telemetry.migrate")

    report = await migrate(refusing_database, timescaledb="auto")

    plain, timescale = _split_migrations()
    assert report.timescaledb is False
    assert report.applied == plain
    assert report.pending == timescale
    applied, tables, extension = await _state(refusing_database)
    assert applied == set(plain)
    assert {"walkthrough_readings", "dead_letters", "schema_migrations"} <= tables
    assert not extension
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "terminating connection" in message  # what the server said
    assert "shared_preload_libraries = 'timescaledb'" in message
    assert "TELEMETRY_TIMESCALEDB=off" in message


async def test_second_migrate_on_a_refusing_server_applies_nothing_and_keeps_pending(
    refusing_database: str,
) -> None:
    await migrate(refusing_database, timescaledb="auto")

    report = await migrate(refusing_database, timescaledb="auto")

    assert report.applied == []
    assert report.pending == _split_migrations()[1]


async def test_session_closed_by_the_server_with_require_is_a_domain_error_and_applies_nothing(
    refusing_database: str,
) -> None:
    with pytest.raises(TimescaleDBUnavailableError) as raised:
        await migrate(refusing_database, timescaledb="require")

    assert isinstance(raised.value, TelemetryError)
    message = str(raised.value)
    assert "TELEMETRY_TIMESCALEDB=require" in message
    assert "shared_preload_libraries = 'timescaledb'" in message
    assert "TELEMETRY_TIMESCALEDB=off" in message
    applied, tables, _ = await _state(refusing_database)
    assert applied == set()
    assert "walkthrough_readings" not in tables


def test_cli_migrate_with_require_on_a_refusing_server_prints_error_and_exits_nonzero(
    refusing_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMETRY_DATABASE_URL", refusing_database)
    monkeypatch.setenv("TELEMETRY_TIMESCALEDB", "require")

    with pytest.raises(SystemExit) as exited:
        main(["migrate"])

    # sys.exit with a message: printed to standard error, exit status 1.
    assert isinstance(exited.value.code, str)
    assert exited.value.code.startswith("error: TELEMETRY_TIMESCALEDB=require")
    assert "shared_preload_libraries = 'timescaledb'" in exited.value.code


async def _server_has_timescaledb(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
            )
        )
    finally:
        await conn.close()


def test_cli_migrate_with_require_on_a_server_without_timescaledb_exits_with_error(
    empty_database_url: str,
) -> None:
    if asyncio.run(_server_has_timescaledb(empty_database_url)):
        pytest.skip("this server has TimescaleDB")
    env = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": empty_database_url,
        "TELEMETRY_TIMESCALEDB": "require",
    }

    done = subprocess.run(
        [sys.executable, "-m", "telemetry", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: TELEMETRY_TIMESCALEDB=require, but the server does not have")
    )
