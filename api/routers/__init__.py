"""The API's routers, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from api.routers import alerts, dead_letters, health, segments, vehicles

__all__ = ["api_v1", "health"]

#: Every resource under ``/api/v1``; ``health`` (``/healthz``, ``/metrics``) stays at the root.
api_v1 = APIRouter(prefix="/api/v1")
for _module in (alerts, vehicles, segments, dead_letters):
    api_v1.include_router(_module.router)
