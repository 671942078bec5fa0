"""``GET /api/v1/segments``: the hot streets, road segments ranked by a pollutant's recent mean.

Kept apart from :mod:`api.routers.segments` (one segment, its statistics) so the listing and
the per-segment routes can change independently; both live under ``/segments``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StringConstraints, field_validator

from telemetry.errors import ValidationError
from telemetry.roads.repository import list_active_segments, list_hot_segments
from telemetry.web import (
    LineString,
    PoolDep,
    QueryModel,
    Text,
    decode_cursor,
    encode_cursor,
    error_responses,
)

__all__ = ["HotSegment", "HotSegmentPage", "HotSegmentQuery", "router"]

router = APIRouter(prefix="/segments", tags=["segments"])

#: The widest box a request may ask for, in degrees of longitude and of latitude (a city).
MAX_BBOX_DEGREES = 2.0
#: How far a listing can be paged.
MAX_OFFSET = 100_000

HotPollutant = Literal["pm25", "pm10", "no2", "o3", "so2", "co", "tvoc"]


class HotSegmentQuery(QueryModel):
    bbox: Annotated[Text, StringConstraints(max_length=100)] | None = Field(
        None,
        description="minlon,minlat,maxlon,maxlat (WGS 84): segments intersecting the box; at "
        f"most {MAX_BBOX_DEGREES:g} degrees wide and high",
    )
    pollutant: HotPollutant = "pm25"
    minutes: int = Field(60, ge=1, le=7 * 24 * 60, description="the window: the last N minutes")
    min_readings: int = Field(0, ge=0, le=1_000_000, description="leave out quieter segments")
    # Up to 5000, as /segments/stats: without min_readings each page aggregates the window
    # for every segment. (The console draws from /segments/geometry and /segments/recent.)
    limit: int = Field(200, ge=1, le=5000)
    cursor: Annotated[Text, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="the previous page's next_cursor"
    )

    @field_validator("bbox")
    @classmethod
    def _valid_box(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bbox(value)
        return value


class HotSegment(BaseModel):
    """A segment and its valid (flag ``N``) readings of the pollutant in the window."""

    id: int
    name: str | None
    road_ref: str
    highway: str | None
    length_m: float
    geometry: LineString
    readings: int
    mean: float | None
    max: float | None


class HotSegmentPage(BaseModel):
    pollutant: str
    since: datetime
    items: list[HotSegment]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


def parse_bbox(value: str) -> tuple[float, float, float, float]:
    """``minlon,minlat,maxlon,maxlat`` → four floats, or ValueError (a 422)."""
    try:
        min_lon, min_lat, max_lon, max_lat = (float(v) for v in value.split(","))
    except ValueError:
        raise ValueError("bbox must be minlon,minlat,maxlon,maxlat") from None
    if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
        raise ValueError("bbox must have min < max, within -180..180 and -90..90")
    if max_lon - min_lon > MAX_BBOX_DEGREES or max_lat - min_lat > MAX_BBOX_DEGREES:
        raise ValueError(f"bbox may span at most {MAX_BBOX_DEGREES:g} degrees each way")
    return min_lon, min_lat, max_lon, max_lat


@router.get("", response_model=HotSegmentPage, responses=error_responses(422))
async def list_segments(
    pool: PoolDep, query: Annotated[HotSegmentQuery, Query()]
) -> HotSegmentPage:
    """The hot streets: segments with the count, mean and max of the pollutant's valid
    readings over the last ``minutes``, highest mean first (segments without readings last),
    within ``bbox`` when given; follow ``next_cursor`` for the next page."""
    offset = _decode_cursor(query.cursor) if query.cursor is not None else 0
    since = datetime.now(UTC) - timedelta(minutes=query.minutes)
    if query.bbox is None and query.min_readings >= 1:
        # Only segments with readings: aggregated from the window's readings, whatever the
        # size of the network (the console's colouring and refresh ask this).
        rows = await list_active_segments(
            pool,
            pollutant=query.pollutant,
            since=since,
            min_readings=query.min_readings,
            limit=query.limit + 1,
            offset=offset,
        )
    else:
        rows = await list_hot_segments(
            pool,
            pollutant=query.pollutant,
            since=since,
            bbox=parse_bbox(query.bbox) if query.bbox is not None else None,
            min_readings=query.min_readings,
            limit=query.limit + 1,
            offset=offset,
        )
    items = [HotSegment.model_validate(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit and offset + query.limit <= MAX_OFFSET
    next_cursor = encode_cursor("segments", str(offset + query.limit)) if more else None
    return HotSegmentPage(
        pollutant=query.pollutant, since=since, items=items, next_cursor=next_cursor
    )


def _decode_cursor(cursor: str) -> int:
    [value] = decode_cursor("segments", cursor, 1)
    if not value.isdigit() or int(value) > MAX_OFFSET:
        raise ValidationError(f"invalid cursor {cursor!r}")
    return int(value)
