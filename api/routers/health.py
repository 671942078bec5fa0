"""``/healthz`` and ``/metrics``: what load balancers and Prometheus scrape."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.deps import Resources, ResourcesDep
from api.schemas import Check, Health
from telemetry.db import ping

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


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "a dependency is failing"}},
)
async def health(resources: ResourcesDep) -> JSONResponse:
    """200 when the database answers and, if ingest runs here, the broker is connected;
    503 naming each failing dependency and why otherwise."""
    checks = {"database": await _check_database(resources)}
    if resources.settings.ingest_enabled:
        checks["mqtt"] = _check_mqtt(resources)
    healthy = all(c.status == "ok" for c in checks.values())
    body = Health(status="ok" if healthy else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus text exposition of the process's default registry."""
    return Response(content=generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
