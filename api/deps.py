"""The app's resources, opened and closed by its lifespan (``api.app``).

Routes reach the settings and the pool through :mod:`telemetry.web`; only the health check
reads the resources whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import asyncpg
from fastapi import Depends, Request

from telemetry.settings import Settings

if TYPE_CHECKING:
    from telemetry.ingest.worker import IngestWorker

__all__ = ["Resources", "ResourcesDep", "get_resources"]


@dataclass
class Resources:
    """The resources of one app instance, opened and closed by its lifespan.

    ``pool`` is None until the database has been reached (``database_error`` says why not);
    ``worker`` is None unless ingest is enabled and started (``ingest_error`` says why not,
    or why the worker failed once it ran). ``on_ingest_failure`` is called with the reason
    when a running worker fails (``telemetry serve`` stops the server then).
    """

    settings: Settings
    pool: asyncpg.Pool | None = None
    worker: IngestWorker | None = None
    database_error: str | None = None
    ingest_error: str | None = None
    connector: asyncio.Task[None] | None = None  # retries the database while it is unreachable
    on_ingest_failure: Callable[[str], None] | None = None
    stopping: Callable[[], bool] | None = None  # true once the server shuts down (streams end)


def get_resources(request: Request) -> Resources:
    """The app's :class:`Resources`."""
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]
