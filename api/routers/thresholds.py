"""``/api/v1/thresholds``: the exceedance limits, versioned by effective date."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import PoolDep
from api.schemas import Threshold, ThresholdCreate, ThresholdQuery
from telemetry.store.thresholds import create_threshold, list_thresholds

__all__ = ["router"]

router = APIRouter(prefix="/thresholds", tags=["thresholds"])


@router.get("", response_model=list[Threshold])
async def get_thresholds(
    pool: PoolDep, query: Annotated[ThresholdQuery, Query()]
) -> list[Threshold]:
    """Every threshold row, past, current and future."""
    rows = await list_thresholds(pool, kind=query.kind)
    return [Threshold.model_validate(r) for r in rows]


@router.post("", response_model=Threshold, status_code=status.HTTP_201_CREATED)
async def add_threshold(pool: PoolDep, threshold: ThresholdCreate) -> Threshold:
    """Add a limit. To revise one, close the old row's period with a new row starting where it
    ends; 409 if the new period overlaps an existing row for the same kind, pollutant and tier."""
    row = await create_threshold(pool, **threshold.model_dump())
    return Threshold.model_validate(row)
