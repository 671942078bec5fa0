"""The tests' migrated template database: closed to connections so that nothing (TimescaleDB's
background scheduler in particular) can hold it while a test's database is cloned from it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest


async def test_session_template_refuses_connections_and_its_clone_accepts_them(
    database_url: str, template_db: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        allow = await conn.fetchval(
            "SELECT datallowconn FROM pg_database WHERE datname = $1", template_db
        )
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert allow is False
    assert applied > 0


async def test_clone_ends_a_session_left_on_the_template_then_both_drop(
    database_url: str, clone_database: Callable[[str, str], Awaitable[None]]
) -> None:
    template = f"telemetry_test_{uuid.uuid4().hex[:12]}"
    clone = f"telemetry_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{template}"')
        # A session that attached before the template was closed, as a scheduler would.
        leftover = await asyncpg.connect(database_url.rsplit("/", 1)[0] + f"/{template}")
        await admin.execute(f'ALTER DATABASE "{template}" ALLOW_CONNECTIONS false')

        await clone_database(template, clone)

        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError)):
            await leftover.fetchval("SELECT 1")
        leftover.terminate()
        # A database that allows no connections can still be dropped.
        for name in (clone, template):
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        left = await admin.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = ANY($1::text[])", [template, clone]
        )
        assert left == 0
    finally:
        for name in (clone, template):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
