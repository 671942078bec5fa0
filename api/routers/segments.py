"""``/api/v1/segments``: a road segment with its recent hourly statistics, and the street map
(per segment, the median across drive passes of each pass's mean)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Response

from api.schemas import (
    Segment,
    SegmentAqi,
    SegmentQuery,
    SegmentStatsAqi,
    SegmentStatsAqiPage,
    SegmentStatsAqiQuery,
    SubIndex,
)
from telemetry import aqi as hj633
from telemetry.errors import NotFoundError
from telemetry.kinds.walkthrough.record import POLLUTANT_UNITS
from telemetry.kinds.walkthrough.repository import aqi_breakpoints, segment_medians, segment_stats
from telemetry.roads.repository import fetch_segment
from telemetry.settings import Settings
from telemetry.web import BigintId, PoolDep, SettingsDep, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/segments", tags=["segments"])

_GEOJSON: dict[int | str, dict[str, Any]] = {200: {"content": {"application/geo+json": {}}}}


async def _stats(
    pool: PoolDep, settings: SettingsDep, query: SegmentStatsAqiQuery
) -> SegmentStatsAqiPage:
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
        lag_max_gap_s=settings.lag_max_gap_s,
    )
    minimum = settings.segment_reliable_drive_days
    items = [
        SegmentStatsAqi(
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
    if query.aqi != "none" and items:
        indices = await _segment_aqi(pool, settings, query.aqi, [i.segment_id for i in items],
                                     since=since, until=until)  # fmt: skip
        items = [i.model_copy(update={"aqi": indices[i.segment_id]}) for i in items]
    return SegmentStatsAqiPage(
        since=since, until=until, min_drive_days=minimum, items=items, next_after=next_after
    )


async def _segment_aqi(
    pool: PoolDep,
    settings: Settings,
    report: str,
    segment_ids: list[int],
    *,
    since: datetime,
    until: datetime,
) -> dict[int, SegmentAqi]:
    """The indicative AQI of each segment (docs/domain.md §2.5): the sub-indices of its
    medians across passes of the six HJ 633 pollutants, under the coverage rule of
    :func:`telemetry.aqi.indicative_aqi`."""
    table = hj633.BreakpointTable.from_rows(
        settings.aqi_standard, await aqi_breakpoints(pool, settings.aqi_standard)
    )
    rows = await segment_medians(
        pool, segment_ids, hj633.AQI_POLLUTANTS, since=since, until=until,
        max_gap_s=settings.pass_max_gap_s, lag_max_gap_s=settings.lag_max_gap_s,
    )  # fmt: skip
    place = {s: i for i, s in enumerate(segment_ids)}
    column = {p: j for j, p in enumerate(hj633.AQI_POLLUTANTS)}
    shape = (len(segment_ids), len(hj633.AQI_POLLUTANTS))
    median, passes, days = np.full(shape, np.nan), np.zeros(shape, int), np.zeros(shape, int)
    for r in rows:  # one row per segment and pollutant
        at = place[r["segment_id"]], column[r["pollutant"]]
        median[at], passes[at], days[at] = r["median"], r["passes"], r["drive_days"]
    window_s = (until - since).total_seconds()
    result = hj633.indicative_aqi(
        median, passes, days, table=table, report=report, window_s=window_s,
        min_passes=settings.aqi_hourly_min_passes,
        min_drive_days=settings.segment_reliable_drive_days,
    )  # fmt: skip

    def why(i: int, j: int) -> str | None:
        if result.covered[i, j]:
            return None
        if np.isnan(median[i, j]):
            return "no pass with a value in the window"
        if window_s < hj633.REPORT_WINDOW_S[report]:
            return f"the window is shorter than the averaging time ({result.averaging[j]})"
        if not result.units[j]:
            return f"no {settings.aqi_standard} curve for {result.averaging[j]}"
        if report == "hourly":
            return f"fewer than {settings.aqi_hourly_min_passes} passes"
        return f"fewer than {settings.segment_reliable_drive_days} drive days"

    out = {}
    for i, segment_id in enumerate(segment_ids):  # per segment of the page
        value = result.value[i]
        level = hj633.LEVELS[result.level[i] - 1] if result.level[i] > 0 else None
        out[segment_id] = SegmentAqi(
            report=report,
            standard=settings.aqi_standard,
            aqi=None if np.isnan(value) else int(value),
            level=level.level if level else None,
            category=level.category if level else None,
            category_zh=level.category_zh if level else None,
            colour=level.colour if level else None,
            rgb=level.rgb if level else None,
            primary_pollutants=[
                p for j, p in enumerate(hj633.AQI_POLLUTANTS) if result.primary[i, j]
            ],
            complete=bool(result.covered[i].all()),
            iaqi=[
                SubIndex(
                    pollutant=p,
                    averaging=result.averaging[j],
                    concentration=None if np.isnan(median[i, j]) else float(median[i, j]),
                    unit=result.units[j] or POLLUTANT_UNITS[p],
                    passes=int(passes[i, j]),
                    drive_days=int(days[i, j]),
                    iaqi=None if np.isnan(result.sub_index[i, j]) else int(result.sub_index[i, j]),
                    reason=why(i, j),
                )
                for j, p in enumerate(hj633.AQI_POLLUTANTS)
            ],
        )
    return out


def _feature_collection(page: SegmentStatsAqiPage) -> Response:
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
    response_model=SegmentStatsAqiPage,
    responses=_GEOJSON,
)
async def get_segment_stats(
    pool: PoolDep, settings: SettingsDep, query: Annotated[SegmentStatsAqiQuery, Query()]
) -> SegmentStatsAqiPage | Response:
    """The street map of a pollutant over a window (by default the last 30 days, at most 366):
    per segment with at least one drive pass, the median across passes of each pass's mean,
    the number of passes and of distinct drive days (China Standard Time), and ``reliable``
    from the configured number of drive days. Passes are found as detection finds them, from
    valid (flag ``N``) readings snapped to segments, with a vehicle's registered analyser lags
    applied: each value counts where its air was sampled (docs/domain.md §5.8).
    ``format=geojson`` answers a GeoJSON FeatureCollection. Segments in id order; follow
    ``next_after``.

    ``aqi=hourly`` or ``aqi=daily`` adds each segment's **indicative** AQI: the HJ 633
    sub-indices of its medians across passes of SO2, NO2, CO, O3, PM10 and PM2.5, the AQI,
    the primary pollutants, the level and its colour. A sub-index is given only where the
    window is at least the averaging time and the pollutant rests on enough passes (hourly)
    or drive days (daily); see docs/domain.md §2.5. Not a legal AQI."""
    page = await _stats(pool, settings, query)
    return _feature_collection(page) if query.format == "geojson" else page


@router.get("/stats.geojson", responses=_GEOJSON)
async def get_segment_stats_geojson(
    pool: PoolDep, settings: SettingsDep, query: Annotated[SegmentStatsAqiQuery, Query()]
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
