"""``/api/v1/vehicles``: last known state of every vehicle, and the track one drove."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import PoolDep, SettingsDep
from api.schemas import Track, TrackQuery, Vehicle, VehiclePage, VehicleQuery
from telemetry.store import vehicles as store

__all__ = ["MAX_TRACK_POINTS", "router"]

router = APIRouter(prefix="/vehicles", tags=["vehicles"])

#: One reading per second for the longest window (24 h).
MAX_TRACK_POINTS = 86_400

VehicleId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("", response_model=VehiclePage)
async def list_vehicles(
    pool: PoolDep, settings: SettingsDep, query: Annotated[VehicleQuery, Query()]
) -> VehiclePage:
    """Vehicles by id; ``online`` means heard from within ``vehicle_online_s`` seconds."""
    rows = await store.list_vehicles(
        pool,
        online_s=settings.vehicle_online_s,
        kind=query.kind,
        online=query.online,
        after=query.after,
        limit=query.limit + 1,
    )
    items = [Vehicle.model_validate(r) for r in rows[: query.limit]]
    next_after = items[-1].vehicle_id if len(rows) > query.limit else None
    return VehiclePage(items=items, next_after=next_after)


@router.get(
    "/{vehicle_id}/track",
    response_model=Track,
    responses={200: {"content": {"application/geo+json": {}}}},
)
async def vehicle_track(
    pool: PoolDep, vehicle_id: VehicleId, query: Annotated[TrackQuery, Query()]
) -> Response:
    """The vehicle's path and readings in ``[since, until)``: by default the last hour, at
    most 24 hours and 86,400 points."""
    since, until = query.resolved(datetime.now(UTC))
    body = await store.track_geojson(
        pool, vehicle_id, since=since, until=until, max_points=MAX_TRACK_POINTS
    )
    # Built as JSON text by the database; returned as is, without a per-point Python object.
    return Response(content=body, media_type="application/geo+json")
