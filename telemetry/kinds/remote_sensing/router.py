"""Remote sensing under ``/api/v1``: a plate's passes and status, the current high emitters,
pass statistics per site or road segment, and the limits and validity gates the judgement
uses."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field, StringConstraints, model_validator

from telemetry.errors import NotFoundError, ValidationError
from telemetry.kinds.remote_sensing import repository as store
from telemetry.kinds.remote_sensing import service
from telemetry.kinds.remote_sensing.detection import (
    RS_POLLUTANTS,
)
from telemetry.kinds.remote_sensing.record import normalise_plate
from telemetry.web import (
    BIGINT_MAX,
    TEXT_PATTERN,
    AdminDep,
    BodyModel,
    IntegerId,
    LimitValue,
    Note,
    PoolDep,
    QueryModel,
    Text,
    TimeWindow,
    cursor_id,
    cursor_time,
    decode_cursor,
    encode_cursor,
    error_responses,
)

__all__ = [
    "Gate",
    "GateUpdate",
    "HighEmitter",
    "HighEmitterPage",
    "HighEmitterQuery",
    "Limit",
    "LimitCreate",
    "LimitQuery",
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
LimitFuel = Literal["gasoline", "diesel", "natural_gas", "hybrid", "electric"]
Source = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Bound = Annotated[float | None, Field(allow_inf_nan=False)]
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
    cursor: Annotated[Text, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="the previous page's next_cursor"
    )


class StatsQuery(TimeWindow):
    """Pass statistics per ``site`` or ``segment`` in ``[since, until)``: by default the last
    24 hours, never more than 366 days; ``site`` or ``segment`` picks one."""

    by: Literal["site", "segment"] = "site"
    site: Annotated[Text, StringConstraints(min_length=1, max_length=32)] | None = Field(
        None, description="only this site; with by=site only"
    )
    segment: int | None = Field(
        None, ge=1, le=BIGINT_MAX, description="only this road segment; with by=segment only"
    )
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


class LimitQuery(QueryModel):
    """Filters of ``GET /remote-sensing/limits``."""

    fuel_type: Fuel | None = None
    pollutant: Pollutant | None = None


class Limit(BaseModel):
    """A remote-sensing limit: a pass of ``fuel_type`` is over when its value of ``pollutant``
    is above ``limit_value`` (in ``unit``) at a time within [effective_from, effective_to)."""

    id: int
    fuel_type: str
    pollutant: str
    limit_value: float
    unit: str
    source: str
    confirmed: bool
    effective_from: date
    effective_to: date | None
    note: str | None


class LimitCreate(BodyModel):
    """A new limit. A revision is a new row taking effect on a date (CST); ``unit`` is the
    unit the pass reports the pollutant in: ``%`` for co and opacity, ``ppm`` for hc and no,
    ``level`` for ringelmann (422 otherwise). ``effective_to``, when given, must be after
    ``effective_from``."""

    fuel_type: LimitFuel
    pollutant: Pollutant
    limit_value: LimitValue
    unit: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]
    source: Source
    confirmed: bool = Field(description="false: not yet checked against the source")
    effective_from: date
    effective_to: date | None = Field(None, description="exclusive; null: open-ended")
    note: Note | None = None

    @model_validator(mode="after")
    def _dates_ordered(self) -> Self:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        return self


class Gate(BaseModel):
    """A validity gate: a pass (of ``applies_to``'s fuel type, or any) whose ``parameter`` is
    missing, below ``min_value`` or above ``max_value`` is invalid with ``reason``. Gates are
    checked in id order; the first failing one names the reason."""

    id: int
    parameter: str
    min_value: float | None
    max_value: float | None
    applies_to: str
    reason: str
    source: str
    confirmed: bool
    note: str | None


class GateUpdate(BodyModel):
    """A gate's new bounds (in the unit its parameter names; null: no bound, but not both;
    ``min_value`` not above ``max_value``), source, confirmed flag and note. Every field is
    replaced."""

    min_value: Bound
    max_value: Bound
    source: Source
    confirmed: bool
    note: Note | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_value is None and self.max_value is None:
            raise ValueError("a gate needs min_value, max_value or both")
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ValueError("min_value must not be above max_value")
        return self


# --- helpers -------------------------------------------------------------------------------


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    at, row_id = decode_cursor("high-emitters", cursor, 2)
    return cursor_time(cursor, at), cursor_id(cursor, row_id)


def _high_emitter(row: dict[str, Any], window_start: datetime) -> HighEmitter:
    return HighEmitter.model_validate({**row, "current": row["last_confirmed_at"] >= window_start})


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- routes --------------------------------------------------------------------------------


@router.get("/plates/{plate}", response_model=PlateReport, responses=error_responses(404))
async def get_plate(
    pool: PoolDep,
    plate: Annotated[str, Path(min_length=1, max_length=32, pattern=TEXT_PATTERN)],
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
    start = await service.rule_window_start(pool, datetime.now(UTC))
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
    start = await service.rule_window_start(pool, datetime.now(UTC))
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
        next_cursor = encode_cursor(
            "high-emitters", items[-1].last_confirmed_at.isoformat(), str(items[-1].id)
        )
    return HighEmitterPage(items=items, next_cursor=next_cursor)


@router.get("/remote-sensing/stats", response_model=StatsReport)
async def remote_sensing_stats(pool: PoolDep, query: Annotated[StatsQuery, Query()]) -> StatsReport:
    """Per site or road segment: passes, valid share and exceedance rates per pollutant.
    422 for a window wider than 366 days, or ``site`` with by=segment (``segment`` with
    by=site)."""
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


@router.get("/remote-sensing/limits", response_model=list[Limit])
async def get_limits(pool: PoolDep, query: Annotated[LimitQuery, Query()]) -> list[Limit]:
    """The remote-sensing limits per fuel type and pollutant, past, current and future, with
    their source and whether they are confirmed; filters ``fuel_type`` and ``pollutant``."""
    rows = await store.list_limits(pool, fuel_type=query.fuel_type, pollutant=query.pollutant)
    return [Limit.model_validate(r) for r in rows]


@router.post(
    "/remote-sensing/limits",
    response_model=Limit,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403, 409),
)
async def add_limit(pool: PoolDep, principal: AdminDep, body: LimitCreate) -> Limit:
    """Add a limit effective from ``effective_from`` (admin; audited as the token's
    account). The open-ended row of the same fuel type and pollutant it starts inside is
    closed on that date; 409 if the period overlaps any other row of that fuel type and
    pollutant, 422 for a unit other than the pass's.

    Ingest workers apply the change at their next refresh, every
    min(TELEMETRY_SEGMENTS_REFRESH_S, TELEMETRY_THRESHOLDS_REFRESH_S) seconds; passes
    already stored keep their judgement."""
    row = await service.add_limit(pool, **body.model_dump(), by=principal)
    return Limit.model_validate(row)


@router.get("/remote-sensing/gates", response_model=list[Gate])
async def get_gates(pool: PoolDep) -> list[Gate]:
    """The validity gates in the order they are checked, with their source and whether they
    are confirmed."""
    return [Gate.model_validate(r) for r in await store.list_gates(pool)]


@router.put(
    "/remote-sensing/gates/{gate_id}",
    response_model=Gate,
    responses=error_responses(400, 403, 404),
)
async def change_gate(
    pool: PoolDep, principal: AdminDep, gate_id: IntegerId, body: GateUpdate
) -> Gate:
    """Replace a gate's bounds, source, confirmed flag and note (admin; audited as the
    token's account). Its parameter, fuel type and reason stay; 404 for an unknown gate, 422
    when min_value > max_value or both are null.

    Ingest workers apply the change at their next refresh, every
    min(TELEMETRY_SEGMENTS_REFRESH_S, TELEMETRY_THRESHOLDS_REFRESH_S) seconds; passes
    already stored keep their judgement."""
    row = await store.update_gate(pool, gate_id, **body.model_dump(), by=principal)
    return Gate.model_validate(row)
