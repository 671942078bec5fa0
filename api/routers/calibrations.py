"""``/api/v1/vehicles/{vehicle_id}/calibrations``: zero/span calibrations registered by an
operator (docs/domain.md §5.9). Anyone reads them; officers and admins add and remove them,
audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.routers.lags import VehicleId
from api.schemas import CalibrationCreate, CalibrationPeriod, CalibrationQuery
from telemetry.store import calibrations as store
from telemetry.store.vehicles import require_vehicle
from telemetry.web import BigintId, OfficerDep, PoolDep, SettingsDep, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/vehicles", tags=["vehicles"])


@router.post(
    "/{vehicle_id}/calibrations",
    response_model=CalibrationPeriod,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403, 404),
)
async def add_calibration(
    pool: PoolDep,
    settings: SettingsDep,
    principal: OfficerDep,
    vehicle_id: VehicleId,
    body: CalibrationCreate,
) -> CalibrationPeriod:
    """Register a calibration: the vehicle's channel (every channel when ``pollutant`` is
    null) is excluded from detection and the street map over [starts_at, ends_at), at most
    ``TELEMETRY_CALIBRATION_MAX_PERIOD_S`` long. 404: a vehicle that has sent nothing and is
    not registered."""
    await require_vehicle(pool, vehicle_id)
    row = await store.create_period(
        pool,
        vehicle_id,
        kind=body.kind,
        pollutant=body.pollutant,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        note=body.note,
        max_duration_s=settings.calibration_max_period_s,
        by=principal,
    )
    return CalibrationPeriod.model_validate(row)


@router.get(
    "/{vehicle_id}/calibrations",
    response_model=list[CalibrationPeriod],
    responses=error_responses(404),
)
async def list_calibrations(
    pool: PoolDep, vehicle_id: VehicleId, query: Annotated[CalibrationQuery, Query()]
) -> list[CalibrationPeriod]:
    """The vehicle's registered calibrations overlapping the window, newest first."""
    await require_vehicle(pool, vehicle_id)
    rows = await store.list_periods(
        pool, vehicle_id, since=query.since, until=query.until, limit=query.limit
    )
    return [CalibrationPeriod.model_validate(r) for r in rows]


@router.delete(
    "/{vehicle_id}/calibrations/{period_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(403, 404),
)
async def delete_calibration(
    pool: PoolDep, principal: OfficerDep, vehicle_id: VehicleId, period_id: BigintId
) -> Response:
    """Remove a registered calibration. Readings already stored keep the reason they were
    stored with."""
    await store.delete_period(pool, vehicle_id, period_id, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
