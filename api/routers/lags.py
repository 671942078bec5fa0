"""``/api/v1/vehicles/{vehicle_id}/lags``: each pollutant's analyser lag of a vehicle
(docs/domain.md §5.8); anyone reads them, admins register them. Estimates are made from
recorded drives with ``telemetry vehicles lag estimate``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.schemas import AnalyserLag, AnalyserLagsUpdate
from telemetry.errors import ValidationError
from telemetry.store import lags as store
from telemetry.store.vehicles import require_vehicle
from telemetry.web import AdminDep, PoolDep, SettingsDep, error_responses

__all__ = ["VehicleId", "router"]

router = APIRouter(prefix="/vehicles", tags=["vehicles"])

#: A vehicle id as vehicles are registered (docs/adr/0007-broker-accounts.md).
VehicleId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


@router.get("/{vehicle_id}/lags", response_model=list[AnalyserLag], responses=error_responses(404))
async def get_lags(pool: PoolDep, vehicle_id: VehicleId) -> list[AnalyserLag]:
    """The vehicle's lag per pollutant, with how each was obtained; a pollutant not listed has
    no lag (its values are placed where they were reported). Their history is in the audit
    log (entity ``analyser_lag``). 404: a vehicle that has sent nothing and is not
    registered."""
    await require_vehicle(pool, vehicle_id)
    rows = await store.list_lags(pool, vehicle_id=vehicle_id)
    return [AnalyserLag.model_validate(r) for r in rows]


@router.put(
    "/{vehicle_id}/lags",
    response_model=list[AnalyserLag],
    responses=error_responses(400, 403, 404),
)
async def put_lags(
    pool: PoolDep,
    settings: SettingsDep,
    principal: AdminDep,
    vehicle_id: VehicleId,
    body: AnalyserLagsUpdate,
) -> list[AnalyserLag]:
    """Register lags (method ``registered``) of the pollutants named, or remove those given as
    null; the others are kept. Answers every lag of the vehicle afterwards. All changes
    are made together, each audited."""
    too_long = {p: s for p, s in body.lags_s.items() if s is not None and s > settings.lag_max_s}
    if too_long:
        raise ValidationError(f"lags above {settings.lag_max_s:g} s: {too_long}")
    await require_vehicle(pool, vehicle_id)
    await store.set_lags(pool, vehicle_id, body.lags_s, by=principal)
    rows = await store.list_lags(pool, vehicle_id=vehicle_id)
    return [AnalyserLag.model_validate(r) for r in rows]
