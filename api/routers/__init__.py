"""The API's routers, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from api.routers import (
    alerts,
    audit,
    auth,
    calibrations,
    data_quality,
    dead_letters,
    events,
    health,
    hot_segments,
    lags,
    readings,
    segment_map,
    segments,
    users,
    vehicles,
)

__all__ = ["api_v1", "auth", "events", "health"]

#: Every resource under ``/api/v1`` that needs a token; ``auth`` (logging in) is included on
#: its own, ``events`` (which also takes the token as a query parameter) under the same prefix,
#: and ``health`` (``/healthz``, ``/metrics``) stays at the root.
api_v1 = APIRouter(prefix="/api/v1")
for _module in (
    alerts,
    vehicles,
    lags,
    calibrations,
    hot_segments,
    readings,
    segment_map,  # before segments: /segments/geometry is not /segments/{id}
    segments,
    dead_letters,
    data_quality,
    users,
    audit,
):
    api_v1.include_router(_module.router)
