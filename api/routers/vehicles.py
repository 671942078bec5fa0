"""``/api/v1/vehicles``: the last known state of every vehicle, of every kind."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.schemas import Vehicle, VehiclePage, VehicleQuery
from telemetry.store import vehicles as store
from telemetry.web import PoolDep, SettingsDep

__all__ = ["router"]

router = APIRouter(prefix="/vehicles", tags=["vehicles"])


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
