"""The FastAPI application and the lifespan that owns its database pool and ingest worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from fastapi import Depends, FastAPI

import telemetry
from api.console import install_console
from api.deps import Resources
from api.errors import install_error_handlers
from api.routers import api_v1, auth, events, health, webhooks
from telemetry.alerts.dispatcher import WebhookDispatcher
from telemetry.db import create_pool
from telemetry.kinds.registry import KINDS
from telemetry.settings import Settings
from telemetry.web import ERROR_CODES, TOKEN_URL, error_responses, require_viewer

__all__ = ["create_app"]

log = logging.getLogger(__name__)

#: How long one attempt to open the pool may take.
CONNECT_TIMEOUT_S = 10.0
#: Backoff between attempts while the database is unreachable.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0

#: What every resource route may answer besides its own errors: no valid token, an invalid
#: request, and the database being unreachable. (Routes add their 400, 403, 404 and 409.)
COMMON_ERRORS = error_responses(401, 422, 503)
#: Every resource route needs a token of some role; routes that change something ask for more.
SECURED = [Depends(require_viewer)]

_ERROR_ROWS = "".join(
    f"| {status} | `{code}` | {text} |\n" for status, (code, text) in ERROR_CODES.items()
)
DESCRIPTION = f"""Alerts, vehicles and road segments from environmental monitoring vehicles.

Every `/api/v1` route but `POST {TOKEN_URL}` needs `Authorization: Bearer <token>`: log in
there with a user name and password (or use **Authorize** above). Roles: `viewer` reads
everything; `officer` also acknowledges and resolves alerts, opens and closes incidents and
registers calibration periods;
`admin` also changes thresholds, limits, gates, tiers, analyser lags, webhooks and accounts
and reads `/api/v1/audit`.
The account of the token is recorded as the one who made a change.

Every error, on every route (an unknown route and a method a route lacks included), answers
`{{"error": code, "detail": message}}`, with one code per status; a 422 from validating the
request adds `errors`, one item per problem.

| status | error | meaning |
|---|---|---|
{_ERROR_ROWS}"""

_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def create_app(settings: Settings) -> FastAPI:
    """The API for ``settings``. Nothing connects until the app's lifespan starts."""
    app = FastAPI(
        title="Vehicle telemetry",
        version=telemetry.__version__,
        description=DESCRIPTION,
        # /docs is the console's (local Swagger UI assets, no CDN); no ReDoc.
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.resources = Resources(settings=settings)
    install_error_handlers(app)
    app.include_router(api_v1, responses=COMMON_ERRORS, dependencies=SECURED)
    app.include_router(auth.router)
    # Checks its own token: a header, or ?access_token= for a browser's EventSource.
    app.include_router(events.router, prefix="/api/v1", responses=COMMON_ERRORS)
    app.include_router(health.router)
    app.include_router(
        webhooks.router, prefix="/api/v1", responses=COMMON_ERRORS, dependencies=SECURED
    )
    for spec in KINDS:
        app.include_router(spec.router, responses=COMMON_ERRORS, dependencies=SECURED)
    install_console(app, settings)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    resources: Resources = app.state.resources
    # Delivers webhooks once the pool is open (docs/webhooks.md); any number of processes may.
    dispatcher = WebhookDispatcher(resources.settings, lambda: resources.pool)
    try:
        if await _open_pool(resources):
            await _start_worker(resources)
        else:
            # Serve anyway: /healthz reports the database as failing until it is reached.
            resources.connector = asyncio.create_task(_keep_connecting(resources))
            resources.connector.add_done_callback(lambda task: _connector_done(resources, task))
        if resources.settings.webhooks_enabled:
            dispatcher.start()
        yield
    finally:
        await dispatcher.stop()
        await _close(resources)


async def _open_pool(resources: Resources) -> bool:
    """One attempt to open the pool; False (with the reason recorded) if the database is
    unreachable."""
    settings = resources.settings
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            resources.pool = await create_pool(
                settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
            )
    except _UNREACHABLE as exc:
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        resources.database_error = reason
        log.warning("database unavailable: %s", reason)
        return False
    resources.database_error = None
    return True


async def _start_worker(resources: Resources) -> None:
    if not resources.settings.ingest_enabled:
        return
    from telemetry.ingest.worker import IngestWorker

    assert resources.pool is not None
    worker = IngestWorker(
        resources.settings, resources.pool, on_failure=lambda why: _ingest_failed(resources, why)
    )
    await worker.start()
    resources.worker = worker


def _ingest_failed(resources: Resources, why: str) -> None:
    """The worker stopped working: /healthz says so (503) from now on, and the owner of the
    process (``telemetry serve``) is told to stop it, so that it is restarted."""
    resources.ingest_error = f"ingest worker failed: {why}"
    if resources.on_ingest_failure is not None:
        resources.on_ingest_failure(why)


async def _keep_connecting(resources: Resources) -> None:
    delay = RETRY_FIRST_S
    while True:
        await asyncio.sleep(delay)
        if await _open_pool(resources):
            log.info("database reached")
            await _start_worker(resources)
            return
        delay = min(delay * 2, RETRY_MAX_S)


def _connector_done(resources: Resources, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        resources.ingest_error = f"ingest worker failed to start: {type(exc).__name__}: {exc}"
        log.error("ingest worker failed to start", exc_info=exc)


async def _close(resources: Resources) -> None:
    """Stop intake first (the connector, then the worker), then close the pool."""
    if resources.connector is not None:
        resources.connector.cancel()
        await asyncio.wait([resources.connector])
        resources.connector = None
    if resources.worker is not None:
        await resources.worker.stop()
        resources.worker = None
    if resources.pool is not None:
        await resources.pool.close()
        resources.pool = None
