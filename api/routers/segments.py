"""``/api/v1/segments``: a road segment with its recent hourly statistics, and the street map
(per segment, the median across drive passes of each pass's mean)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.schemas import Segment, SegmentQuery
from telemetry.errors import NotFoundError
from telemetry.kinds.walkthrough.record import POLLUTANT_UNITS
from telemetry.kinds.walkthrough.repository import segment_stats
from telemetry.kinds.walkthrough.schemas import (
    SegmentStats,
    SegmentStatsPage,
    SegmentStatsQuery,
)
from telemetry.roads.repository import fetch_segment
from telemetry.web import BigintId, PoolDep, SettingsDep, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/segments", tags=["segments"])

_GEOJSON: dict[int | str, dict[str, Any]] = {200: {"content": {"application/geo+json": {}}}}


async def _stats(
    pool: PoolDep, settings: SettingsDep, query: SegmentStatsQuery
) -> SegmentStatsPage:
    since, until = query.resolved(datetime.now(UTC))
    rows = await segment_stats(
        pool,
        query.pollutant,
        since=since,
        until=until,
        max_gap_s=settings.pass_max_gap_s,
        bbox=query.box(),
        after_id=query.after or 0,
        limit=query.limit + 1,
    )
    minimum = settings.segment_reliable_drive_days
    items = [
        SegmentStats(
            segment_id=r["id"],
            source=r["source"],
            road_ref=r["road_ref"],
            seq=r["seq"],
            name=r["name"],
            highway=r["highway"],
            length_m=r["length_m"],
            pollutant=query.pollutant,
            unit=POLLUTANT_UNITS[query.pollutant],
            median=r["median"],
            passes=r["passes"],
            drive_days=r["drive_days"],
            reliable=r["drive_days"] >= minimum,
            geometry=r["geometry"],
        )
        for r in rows[: query.limit]
    ]
    next_after = items[-1].segment_id if len(rows) > query.limit else None
    return SegmentStatsPage(
        since=since, until=until, min_drive_days=minimum, items=items, next_after=next_after
    )


def _feature_collection(page: SegmentStatsPage) -> Response:
    """The page as a GeoJSON FeatureCollection, the window and the cursor as foreign members
    (RFC 7946 §6.1)."""
    features = [
        {
            "type": "Feature",
            "id": item.segment_id,
            "geometry": item.geometry.model_dump(),
            "properties": item.model_dump(mode="json", exclude={"geometry"}),
        }
        for item in page.items
    ]
    body = {
        "type": "FeatureCollection",
        "features": features,
        **page.model_dump(mode="json", exclude={"items"}),
    }
    return Response(content=json.dumps(body), media_type="application/geo+json")


@router.get(
    "/stats",
    response_model=SegmentStatsPage,
    responses=_GEOJSON,
)
async def get_segment_stats(
    pool: PoolDep, settings: SettingsDep, query: Annotated[SegmentStatsQuery, Query()]
) -> SegmentStatsPage | Response:
    """The street map of a pollutant over a window (by default the last 30 days, at most 366):
    per segment with at least one drive pass, the median across passes of each pass's mean,
    the number of passes and of distinct drive days (China Standard Time), and ``reliable``
    from the configured number of drive days. Passes are found as detection finds them, from
    valid (flag ``N``) readings snapped to segments. ``format=geojson`` answers a GeoJSON
    FeatureCollection. Segments in id order; follow ``next_after``."""
    page = await _stats(pool, settings, query)
    return _feature_collection(page) if query.format == "geojson" else page


@router.get("/stats.geojson", responses=_GEOJSON)
async def get_segment_stats_geojson(
    pool: PoolDep, settings: SettingsDep, query: Annotated[SegmentStatsQuery, Query()]
) -> Response:
    """``/segments/stats`` as a GeoJSON FeatureCollection, whatever ``format`` says."""
    return _feature_collection(await _stats(pool, settings, query))


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
