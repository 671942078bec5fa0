"""What routes depend on: the settings, the database pool and the app's resources.

The app lifespan (``api.app``) owns the resources and keeps them in ``app.state.resources``;
routes reach them only through the dependencies below.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import asyncpg
from fastapi import Depends, Request

from telemetry.errors import UnavailableError
from telemetry.settings import Settings

if TYPE_CHECKING:
    from telemetry.ingest.worker import IngestWorker

__all__ = [
    "PoolDep",
    "Resources",
    "ResourcesDep",
    "SettingsDep",
    "get_pool",
    "get_resources",
    "get_settings",
]


@dataclass
class Resources:
    """The resources of one app instance, opened and closed by its lifespan.

    ``pool`` is None until the database has been reached (``database_error`` says why not);
    ``worker`` is None unless ingest is enabled and started (``ingest_error`` says why not).
    """

    settings: Settings
    pool: asyncpg.Pool | None = None
    worker: IngestWorker | None = None
    database_error: str | None = None
    ingest_error: str | None = None
    connector: asyncio.Task[None] | None = None  # retries the database while it is unreachable


def get_resources(request: Request) -> Resources:
    """The app's :class:`Resources`."""
    resources: Resources = request.app.state.resources
    return resources


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return get_resources(request).settings


def get_pool(request: Request) -> asyncpg.Pool:
    """The database pool, or :class:`UnavailableError` (503) while the database is unreachable."""
    resources = get_resources(request)
    if resources.pool is None:
        reason = resources.database_error or "not connected yet"
        raise UnavailableError(f"database unavailable: {reason}")
    return resources.pool


ResourcesDep = Annotated[Resources, Depends(get_resources)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
