"""``/healthz`` and ``/metrics``: what load balancers and Prometheus scrape."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.deps import Resources, ResourcesDep
from api.schemas import Check, Health
from telemetry.db import ping
from telemetry.web import authenticate, error_responses

if TYPE_CHECKING:
    from telemetry.ingest.worker import IngestWorker

__all__ = ["router"]

router = APIRouter(tags=["operations"])

#: How long the database may take to hand out a connection and answer ``SELECT 1``.
DATABASE_TIMEOUT_S = 2.0

OK = Check(status="ok")


async def _check_database(resources: Resources) -> Check:
    if resources.pool is None:
        return Check(status="failed", detail=resources.database_error or "not connected yet")
    try:
        await ping(resources.pool, timeout_s=DATABASE_TIMEOUT_S)
    except TimeoutError:
        return Check(status="failed", detail=f"no answer within {DATABASE_TIMEOUT_S:g} s")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return Check(status="failed", detail=f"{type(exc).__name__}: {exc}")
    return OK


def _check_mqtt(resources: Resources) -> Check:
    if resources.worker is None:
        reason = resources.ingest_error or "ingest worker not started: database unavailable"
        return Check(status="failed", detail=reason)
    if not resources.worker.mqtt_connected:
        return Check(status="failed", detail="ingest worker is not connected to the broker")
    return OK


def _check_ingest(resources: Resources, worker: IngestWorker, age_s: float | None) -> Check:
    """Failed when the worker has failed, or when a received message has waited longer than
    the limit for its commit (connected but committing nothing)."""
    if worker.failure is not None:
        return Check(status="failed", detail=f"ingest worker failed: {worker.failure}")
    limit = resources.settings.health_max_unacked_age_s
    if age_s is not None and age_s > limit:
        return Check(
            status="failed",
            detail=(
                f"the oldest unacknowledged message has waited {age_s:.1f} s for its commit "
                f"(limit {limit:g} s, TELEMETRY_HEALTH_MAX_UNACKED_AGE_S)"
            ),
        )
    return OK


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "a dependency is failing"}},
)
async def health(resources: ResourcesDep) -> JSONResponse:
    """200 when the database answers and, if ingest runs here, the broker is connected, the
    worker runs and no received message has waited past TELEMETRY_HEALTH_MAX_UNACKED_AGE_S
    for its commit; 503 naming each failing check and why otherwise."""
    checks = {"database": await _check_database(resources)}
    age_s = None
    if resources.settings.ingest_enabled:
        checks["mqtt"] = _check_mqtt(resources)
        if resources.worker is not None:  # else the mqtt check says why there is none
            age_s = resources.worker.oldest_unacked_age_s()
            checks["ingest"] = _check_ingest(resources, resources.worker, age_s)
    healthy = all(c.status == "ok" for c in checks.values())
    body = Health(
        status="ok" if healthy else "unavailable", checks=checks, oldest_unacked_age_s=age_s
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


async def _metrics_access(request: Request, resources: ResourcesDep) -> None:
    """Nothing while TELEMETRY_METRICS_PUBLIC is true; otherwise a live token of any role."""
    if resources.settings.metrics_public:
        return
    await authenticate(request)


@router.get(
    "/metrics",
    response_class=Response,
    responses=error_responses(401, 503),
    dependencies=[Depends(_metrics_access)],
)
async def metrics() -> Response:
    """Prometheus text exposition of the process's default registry. Open while
    TELEMETRY_METRICS_PUBLIC is true (the default); otherwise it needs a bearer token of any
    role (401 without one, 503 while the database cannot check it)."""
    return Response(content=generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
