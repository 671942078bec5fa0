"""Walk-through routes under ``/api/v1``: the exceedance limits (versioned by effective date)
and the track a vehicle drove."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from telemetry.kinds.walkthrough import repository
from telemetry.kinds.walkthrough.schemas import (
    Threshold,
    ThresholdCreate,
    ThresholdQuery,
    Track,
    TrackQuery,
)
from telemetry.web import TEXT_PATTERN, AdminDep, PoolDep, error_responses

__all__ = ["MAX_TRACK_POINTS", "router"]

router = APIRouter(prefix="/api/v1")

#: One reading per second for the longest window (24 h).
MAX_TRACK_POINTS = 86_400

VehicleId = Annotated[str, Path(min_length=1, max_length=64, pattern=TEXT_PATTERN)]


@router.get("/thresholds", response_model=list[Threshold], tags=["thresholds"])
async def get_thresholds(
    pool: PoolDep, query: Annotated[ThresholdQuery, Query()]
) -> list[Threshold]:
    """Every threshold row, past, current and future."""
    rows = await repository.list_thresholds(pool, kind=query.kind)
    return [Threshold.model_validate(r) for r in rows]


@router.post(
    "/thresholds",
    response_model=Threshold,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403, 409),
    tags=["thresholds"],
)
async def add_threshold(
    pool: PoolDep, principal: AdminDep, threshold: ThresholdCreate
) -> Threshold:
    """Add a limit (admin). To revise one, close the old row's period with a new row starting
    where it ends; 409 if the new period overlaps an existing row for the same kind, pollutant
    and tier. Audited as the token's account."""
    row = await repository.create_threshold(pool, **threshold.model_dump(), by=principal)
    return Threshold.model_validate(row)


@router.get(
    "/vehicles/{vehicle_id}/track",
    response_model=Track,
    responses={200: {"content": {"application/geo+json": {}}}, **error_responses(404)},
    tags=["vehicles"],
)
async def vehicle_track(
    pool: PoolDep, vehicle_id: VehicleId, query: Annotated[TrackQuery, Query()]
) -> Response:
    """The vehicle's path and readings in ``[since, until)``: by default the last hour, at
    most 24 hours (422 for a wider window) and 86,400 points; 404 if the vehicle was never
    heard from."""
    since, until = query.resolved(datetime.now(UTC))
    body = await repository.track_geojson(
        pool, vehicle_id, since=since, until=until, max_points=MAX_TRACK_POINTS
    )
    # Built as JSON text by the database; returned as is, without a per-point Python object.
    return Response(content=body, media_type="application/geo+json")
