"""``/api/v1/segments``: a road segment with its recent hourly statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.schemas import Segment, SegmentQuery
from telemetry.errors import NotFoundError
from telemetry.roads.repository import fetch_segment
from telemetry.web import BigintId, PoolDep, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/segments", tags=["segments"])


@router.get("/{segment_id}", response_model=Segment, responses=error_responses(404))
async def get_segment(
    pool: PoolDep, segment_id: BigintId, query: Annotated[SegmentQuery, Query()]
) -> Segment:
    """The segment's geometry and its hourly statistics for the last ``hours`` hours; 404 if
    there is no such segment."""
    since = datetime.now(UTC) - timedelta(hours=query.hours)
    segment = await fetch_segment(pool, segment_id, since=since)
    if segment is None:
        raise NotFoundError(f"segment {segment_id} does not exist")
    return Segment.model_validate(segment)
