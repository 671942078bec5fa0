"""Remote sensing under ``/api/v1``: a plate's passes and status, the current high emitters,
and pass statistics per site or road segment."""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from api.deps import PoolDep
from api.schemas import TimeWindow
from telemetry.detect.remote_sensing import RS_POLLUTANTS, cst_month, month_start_us
from telemetry.errors import NotFoundError, ValidationError
from telemetry.pipelines.remote_sensing import RuleParams, normalise_plate
from telemetry.store import remote_sensing as store

__all__ = [
    "HighEmitter",
    "HighEmitterPage",
    "HighEmitterQuery",
    "Pass",
    "PlateQuery",
    "PlateReport",
    "PollutantStats",
    "SiteStats",
    "StatsQuery",
    "StatsReport",
    "router",
]

router = APIRouter(prefix="/api/v1", tags=["remote sensing"])

Pollutant = Literal["co", "hc", "no", "opacity", "ringelmann"]
Fuel = Literal["gasoline", "diesel", "natural_gas", "hybrid", "electric", "unknown"]
MAX_STATS_WINDOW = timedelta(days=366)
DEFAULT_STATS_WINDOW = timedelta(hours=24)


# --- models --------------------------------------------------------------------------------


class PlateQuery(TimeWindow):
    """Which of the plate's passes to list: newest first, within ``[since, until)``."""

    limit: int = Field(100, ge=1, le=1000)


class HighEmitterQuery(TimeWindow):
    """Filters of ``GET /high-emitters``. ``since`` (last confirmation at or after) defaults
    to the start of the rule's window: the first of the calendar months (CST) it spans."""

    pollutant: Pollutant | None = None
    fuel_type: Fuel | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=200)


class StatsQuery(TimeWindow):
    """Pass statistics per ``site`` or ``segment`` in ``[since, until)``: by default the last
    24 hours, never more than 366 days; ``site`` or ``segment`` picks one."""

    by: Literal["site", "segment"] = "site"
    site: str | None = Field(None, min_length=1, max_length=32)
    segment: int | None = Field(None, ge=1)
    limit: int = Field(1000, ge=1, le=10_000)


class Pass(BaseModel):
    """One measured pass with its judgement. Units as in the MQTT contract."""

    vehicle_id: str
    ts: datetime
    lane: int
    site_id: str | None
    segment_id: int | None
    lat: float
    lon: float
    plate: str | None
    plate_color_scheme: str
    plate_color_code: str | None
    plate_colour: str | None
    fuel_type: str
    speed_kmh: float | None
    accel_ms2: float | None
    slope_pct: float | None
    temp_c: float | None
    rh_pct: float | None
    pressure_kpa: float | None
    wind_speed_ms: float | None
    co2_pct: float | None
    co_pct: float | None
    hc_ppm: float | None
    no_ppm: float | None
    opacity_pct: float | None
    ringelmann: float | None
    images: list[str]
    vsp_kw_t: float | None
    valid: bool
    invalid_reason: str | None
    exceeded: list[str] = Field(description="pollutants over their limit on this pass")


class HighEmitter(BaseModel):
    """A plate confirmed as a high emitter of one pollutant, with the latest evidence."""

    id: int
    plate: str
    pollutant: str
    fuel_type: str
    plate_colour: str | None
    first_confirmed_at: datetime
    last_confirmed_at: datetime
    confirmations: int
    last_value: float
    limit_value: float
    unit: str
    source: str
    evidence: list[dict[str, Any]]
    current: bool = Field(description="last confirmed within the rule's calendar-month window")


class PlateReport(BaseModel):
    plate: str
    high_emitter: bool = Field(description="a current high emitter of at least one pollutant")
    statuses: list[HighEmitter]
    passes: list[Pass]


class HighEmitterPage(BaseModel):
    items: list[HighEmitter]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class PollutantStats(BaseModel):
    judged: int = Field(description="valid passes measured and with a limit for their fuel")
    exceeded: int
    rate: float | None = Field(description="exceeded / judged; null when nothing was judged")


class SiteStats(BaseModel):
    site_id: str | None = None
    segment_id: int | None = None
    passes: int
    valid: int
    valid_share: float
    exceeding: int = Field(description="valid passes over at least one limit")
    exceedance_rate: float | None = Field(description="exceeding / valid")
    first_pass: datetime
    last_pass: datetime
    pollutants: dict[str, PollutantStats]


class StatsReport(BaseModel):
    by: Literal["site", "segment"]
    since: datetime
    until: datetime
    items: list[SiteStats]


# --- helpers -------------------------------------------------------------------------------

_CURSOR_PREFIX = "high-emitters:"


def _encode_cursor(last_confirmed_at: datetime, row_id: int) -> str:
    raw = f"{_CURSOR_PREFIX}{last_confirmed_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError(raw)
        at, row_id = raw.removeprefix(_CURSOR_PREFIX).split("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError(at)
        return when, int(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError(f"invalid cursor {cursor!r}") from None


async def _window_start(pool: asyncpg.Pool) -> datetime:
    """00:00 CST on the first day of the earliest calendar month of the rule's window."""
    rule = RuleParams.from_rows((await store.load_reference(pool)).rule)
    month = int(cst_month([time.time_ns() // 1000])[0]) - (rule.window_months - 1)
    start_us = int(month_start_us([month])[0])
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=start_us)


def _high_emitter(row: dict[str, Any], window_start: datetime) -> HighEmitter:
    return HighEmitter.model_validate({**row, "current": row["last_confirmed_at"] >= window_start})


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- routes --------------------------------------------------------------------------------


@router.get("/plates/{plate}", response_model=PlateReport)
async def get_plate(
    pool: PoolDep,
    plate: Annotated[str, Path(min_length=1, max_length=32)],
    query: Annotated[PlateQuery, Query()],
) -> PlateReport:
    """A plate's passes (newest first) with validity and exceedances, and its high-emitter
    status per pollutant with the evidence passes; 404 if the plate was never measured."""
    normalised = normalise_plate(plate)
    if normalised is None:
        raise ValidationError(f"{plate!r} is not a plate")
    passes = await store.list_plate_passes(
        pool, normalised, since=query.since, until=query.until, limit=query.limit
    )
    statuses = await store.high_emitter_status(pool, normalised)
    if not passes and not statuses:
        raise NotFoundError(f"no remote-sensing pass of plate {normalised}")
    start = await _window_start(pool)
    items = [_high_emitter(s, start) for s in statuses]
    return PlateReport(
        plate=normalised,
        high_emitter=any(s.current for s in items),
        statuses=items,
        passes=[Pass.model_validate(p) for p in passes],
    )


@router.get("/high-emitters", response_model=HighEmitterPage)
async def list_high_emitters(
    pool: PoolDep, query: Annotated[HighEmitterQuery, Query()]
) -> HighEmitterPage:
    """Plates confirmed as high emitters, latest confirmation first; follow ``next_cursor``."""
    start = await _window_start(pool)
    after = _decode_cursor(query.cursor) if query.cursor is not None else None
    rows = await store.list_high_emitters(
        pool,
        confirmed_since=query.since or start,
        confirmed_until=query.until,
        pollutant=query.pollutant,
        fuel_type=query.fuel_type,
        after=after,
        limit=query.limit + 1,
    )
    items = [_high_emitter(r, start) for r in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        next_cursor = _encode_cursor(items[-1].last_confirmed_at, items[-1].id)
    return HighEmitterPage(items=items, next_cursor=next_cursor)


@router.get("/remote-sensing/stats", response_model=StatsReport)
async def remote_sensing_stats(pool: PoolDep, query: Annotated[StatsQuery, Query()]) -> StatsReport:
    """Per site or road segment: passes, valid share and exceedance rates per pollutant."""
    until = query.until or (
        query.since + DEFAULT_STATS_WINDOW if query.since else datetime.now(UTC)
    )
    since = query.since or until - DEFAULT_STATS_WINDOW
    if until - since > MAX_STATS_WINDOW:
        raise ValidationError("the statistics window may span at most 366 days")
    if query.by == "site" and query.segment is not None:
        raise ValidationError("segment= filters by='segment' statistics")
    if query.by == "segment" and query.site is not None:
        raise ValidationError("site= filters by='site' statistics")
    key = (
        query.site
        if query.by == "site"
        else (None if query.segment is None else str(query.segment))
    )
    rows = await store.pass_statistics(
        pool, by=query.by, since=since, until=until, key=key, limit=query.limit
    )
    items = []
    for r in rows:
        pollutants = {
            p: PollutantStats(
                judged=r[f"{p}_judged"],
                exceeded=r[f"{p}_exceeded"],
                rate=_ratio(r[f"{p}_exceeded"], r[f"{p}_judged"]),
            )
            for p in RS_POLLUTANTS
        }
        items.append(
            SiteStats(
                site_id=r["key"] if query.by == "site" else None,
                segment_id=r["key"] if query.by == "segment" else None,
                passes=r["passes"],
                valid=r["valid"],
                valid_share=r["valid"] / r["passes"],
                exceeding=r["exceeding"],
                exceedance_rate=_ratio(r["exceeding"], r["valid"]),
                first_pass=r["first_pass"],
                last_pass=r["last_pass"],
                pollutants=pollutants,
            )
        )
    return StatsReport(by=query.by, since=since, until=until, items=items)
