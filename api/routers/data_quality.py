"""``/api/v1/data-quality``: walk-through readings per vehicle and day, with their sensor
faults (docs/domain.md §5.7) and data flags."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from telemetry.kinds.walkthrough.repository import data_quality
from telemetry.kinds.walkthrough.schemas import (
    DataQualityDay,
    DataQualityPage,
    DataQualityQuery,
)
from telemetry.web import PoolDep

__all__ = ["router"]

router = APIRouter(prefix="/data-quality", tags=["data quality"])


@router.get("", response_model=DataQualityPage)
async def get_data_quality(
    pool: PoolDep, query: Annotated[DataQualityQuery, Query()]
) -> DataQualityPage:
    """Per vehicle and China Standard Time day in the window (by default the last 7 days, at
    most 92): the readings stored, those flagged other than ``N``, and those with a sensor
    fault (``flatline``, ``range_limit``, ``step``) and those under zero/span calibration
    (``calibration``), newest day first."""
    since, until = query.resolved(datetime.now(UTC))
    rows = await data_quality(
        pool, since=since, until=until, vehicle_id=query.vehicle, limit=query.limit + 1
    )
    items = [DataQualityDay.model_validate(r) for r in rows[: query.limit]]
    return DataQualityPage(since=since, until=until, items=items, truncated=len(rows) > query.limit)
