"""Request, query and response models of the HTTP API.

Query models are composed by inheritance (a time window, a page) and validated as a whole,
so a bad combination (``since`` after ``until``, a window too wide) is a 422 like any other.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from telemetry.accounts.model import NAME_PATTERN, Role
from telemetry.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from telemetry.kinds.contract import Kind
from telemetry.kinds.walkthrough.record import POLLUTANTS
from telemetry.kinds.walkthrough.schemas import SegmentStats, SegmentStatsPage, SegmentStatsQuery
from telemetry.web import (
    BIGINT_MAX,
    TEXT_PATTERN,
    BodyModel,
    LineString,
    Name,
    Note,
    QueryModel,
    Text,
    Timestamp,
    TimeWindow,
    Who,
)

__all__ = [
    "Account",
    "AccountCreate",
    "AccountCreated",
    "AccountUpdate",
    "Alert",
    "AlertAction",
    "AlertPage",
    "AlertQuery",
    "AlertStatus",
    "AnalyserLag",
    "AnalyserLagsUpdate",
    "AuditEntry",
    "AuditPage",
    "AuditQuery",
    "CalibrationCreate",
    "CalibrationPeriod",
    "CalibrationQuery",
    "Check",
    "DeadLetter",
    "DeadLetterPage",
    "DeadLetterQuery",
    "ExtraPoint",
    "ExtraSeries",
    "ExtraSeriesQuery",
    "Health",
    "Me",
    "Segment",
    "SegmentAqi",
    "SegmentHour",
    "SegmentQuery",
    "SegmentStatsAqi",
    "SegmentStatsAqiPage",
    "SegmentStatsAqiQuery",
    "SubIndex",
    "Token",
    "TokenRevocation",
    "Vehicle",
    "VehiclePage",
    "VehicleQuery",
]

AlertStatus = Literal["open", "acknowledged", "resolved"]
AlertConfidence = Literal["suspected", "confirmed"]
AlertResolution = Literal["verified", "officer", "quiet"]
AlertSeverity = Literal["info", "warning", "critical"]


# --- query models --------------------------------------------------------------------------


class AlertQuery(TimeWindow):
    """Filters of ``GET /alerts``; ``since``/``until`` select episodes overlapping the window."""

    status: list[AlertStatus] = Field(default_factory=list)
    kind: Kind | None = None
    pollutant: Name | None = None
    vehicle: Name | None = None
    segment: int | None = Field(
        None, ge=1, le=BIGINT_MAX, description="alerts whose stretch contains this segment"
    )
    confidence: AlertConfidence | None = Field(
        None, description="suspected (one drive) or confirmed (repeat drive or fixed point)"
    )
    stale: bool | None = Field(
        None, description="true: unresolved alerts nobody has re-measured for a while"
    )
    resolution: AlertResolution | None = Field(None, description="how a resolved alert was closed")
    rule: Name | None = Field(None, description="the alert's rule, or any rule in its rules")
    severity: list[AlertSeverity] = Field(default_factory=list)
    order: Literal["newest", "severity"] = Field(
        "newest", description="newest first, or most severe first (then newest)"
    )
    limit: int = Field(50, ge=1, le=500)
    cursor: Annotated[Text, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="the previous page's next_cursor"
    )


class VehicleQuery(QueryModel):
    kind: Kind | None = None
    online: bool | None = None
    after: Name | None = Field(None, description="continue after this vehicle id")
    limit: int = Field(1000, ge=1, le=10_000)


class SegmentQuery(QueryModel):
    hours: int = Field(24, ge=1, le=24 * 31, description="hourly statistics for this many hours")


class DeadLetterQuery(QueryModel):
    reason: Name | None = None
    kind: Name | None = None
    before_id: int | None = Field(None, ge=1, le=BIGINT_MAX)
    limit: int = Field(100, ge=1, le=1000)


# --- alerts --------------------------------------------------------------------------------


class Alert(BaseModel):
    """One alert episode on a subject (a road stretch, a plate, an incident), open until it is
    resolved: by verification (later clean passes), by an officer, or, for emergency alerts
    only, by a quiet period.

    Walk-through alerts have rule ``pass_screening`` and list the rules that fired in
    ``rules``: ``reference_ratio`` (pass mean / reference limit, C/S, 占标率: an indicator,
    not a legal exceedance), ``fixed_point_trigger`` (a local trigger calling for a fixed-point
    measurement) and ``hotspot`` (pass mean against the vehicle's own background)."""

    id: int
    kind: str
    subject: str
    segment_id: int | None
    pollutant: str
    rule: str
    severity: str
    status: AlertStatus
    threshold_id: int | None
    limit_value: float
    unit: str
    averaging: str | None
    source: str
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    last_value: float
    peak_value: float
    peak_ratio: float | None = Field(
        None, description="the highest C/S (or mean / (factor x background) for a hotspot)"
    )
    peak_multiple: float | None = Field(
        None,
        description="the exceedance multiple (C − S)/S, only where a valid average was "
        "compared (never for a short walk-through pass)",
    )
    rules: list[str] = Field(default_factory=list, description="every rule that fired")
    segments: list[int] = Field(default_factory=list, description="the stretch's segments")
    confidence: AlertConfidence = "confirmed"
    confirmed_at: datetime | None = None
    stale_since: datetime | None = Field(
        None, description="set while nobody has re-measured the alert; not a resolution"
    )
    resolution: AlertResolution | None = None
    verification: dict[str, Any] = Field(
        default_factory=dict,
        description="the later clean passes over the stretch and before/after statistics",
    )
    vehicles: list[str]
    details: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolve_note: str | None
    street: str | None = Field(None, description="the imported road name; null when unnamed")
    point: dict[str, float] | None = Field(
        None, description="{lon, lat}: the middle of the alert's segment; null without one"
    )


class AlertPage(BaseModel):
    items: list[Alert]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class AlertAction(BodyModel):
    """Why an alert is acknowledged or resolved. The account of the bearer token is recorded
    as the one who did it."""

    by: Who | None = Field(
        None,
        deprecated=True,
        description="ignored: the token's account is recorded, whatever this says",
    )
    note: Note | None = None


# --- vehicles ------------------------------------------------------------------------------


class Vehicle(BaseModel):
    vehicle_id: str
    kind: str
    last_ts: datetime
    last_lat: float
    last_lon: float
    last_received_at: datetime
    readings: int
    online: bool


class VehiclePage(BaseModel):
    items: list[Vehicle]
    next_after: str | None = Field(description="pass as ?after= for the next page; null at the end")


# --- segments, thresholds, dead letters ----------------------------------------------------


class SegmentHour(BaseModel):
    """One hour of statistics on a segment, from readings flagged valid (``N``) only."""

    bucket: datetime
    readings: int
    pm25_avg: float | None = None
    pm25_max: float | None = None
    pm10_avg: float | None = None
    pm10_max: float | None = None
    no2_avg: float | None = None
    no2_max: float | None = None
    o3_avg: float | None = None
    o3_max: float | None = None
    so2_avg: float | None = None
    so2_max: float | None = None
    co_avg: float | None = None
    co_max: float | None = None
    tvoc_avg: float | None = None
    tvoc_max: float | None = None


class Segment(BaseModel):
    id: int
    source: str
    road_ref: str
    seq: int
    name: str | None
    highway: str | None
    length_m: float
    geometry: LineString
    hourly: list[SegmentHour]


class DeadLetter(BaseModel):
    id: int
    received_at: datetime
    topic: str
    kind: str | None
    vehicle_id: str | None
    reason: str
    detail: str
    item_index: int | None
    payload: str = Field(description="the raw payload, decoded as UTF-8 with replacement")


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_before_id: int | None = Field(description="pass as ?before_id= for the next page")


# --- health --------------------------------------------------------------------------------


class Check(BaseModel):
    status: Literal["ok", "failed"]
    detail: str | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Check]
    # Seconds the oldest received, not yet committed and acknowledged message has waited
    # (null when none waits, or when this process does not ingest).
    oldest_unacked_age_s: float | None = None


# --- accounts, tokens and the audit log ----------------------------------------------------

AccountName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Cursor = Annotated[Text, StringConstraints(min_length=1, max_length=200)]


class Token(BaseModel):
    """A bearer token (OAuth2 token response): send ``Authorization: Bearer <access_token>``."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the token expires")


class Me(BaseModel):
    """The account a token belongs to."""

    name: str
    role: Role


class Account(BaseModel):
    """An account (never its password)."""

    id: int
    name: str
    role: Role
    disabled: bool
    disabled_at: datetime | None
    created_at: datetime
    live_tokens: int | None = Field(None, description="unexpired, unrevoked tokens")


class AccountCreate(BodyModel):
    """A new account. Without ``password`` one is generated and answered once."""

    name: AccountName
    role: Role
    password: (
        Annotated[
            str,
            StringConstraints(
                min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH, pattern=TEXT_PATTERN
            ),
        ]
        | None
    ) = None


class AccountCreated(Account):
    password: str | None = Field(description="the generated password (shown once), or null")


class AccountUpdate(BodyModel):
    """A new role and / or disabling or enabling; disabling revokes the account's tokens."""

    role: Role | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> AccountUpdate:
        if self.role is None and self.disabled is None:
            raise ValueError("give role, disabled or both")
        return self


class TokenRevocation(BaseModel):
    revoked: int = Field(description="how many live tokens were revoked")


class AuditQuery(TimeWindow):
    """Filters of ``GET /audit``: ``since``/``until`` select the time of the change."""

    account: Annotated[Text, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="an account name, or cli:<user> for the command line"
    )
    entity: Name | None = Field(
        None,
        description="alert, incident, threshold, rs_limit, rs_gate, emergency_tier or account",
    )
    entity_id: Annotated[Text, StringConstraints(min_length=1, max_length=200)] | None = None
    action: Name | None = Field(None, description="e.g. alert.acknowledge")
    limit: int = Field(50, ge=1, le=500)
    cursor: Cursor | None = Field(None, description="the previous page's next_cursor")


class AuditEntry(BaseModel):
    """One change: who made it, when (the time of its transaction), what, and the entity
    before and after (null before a creation)."""

    id: int
    at: datetime
    account: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


# --- the street map's indicative AQI (docs/domain.md §2.5) ----------------------------------


class SegmentStatsAqiQuery(SegmentStatsQuery):
    """``GET /segments/stats`` with, optionally, the indicative AQI of each segment."""

    aqi: Literal["none", "hourly", "daily"] = Field(
        "none",
        description="add each segment's indicative AQI (HJ 633 sub-indices of its medians "
        "across passes; docs/domain.md §2.5): hourly (1 h curves, PM on the daily ones) or "
        "daily (24 h curves, O3 8 h); none: leave it out",
    )


class SubIndex(BaseModel):
    """One pollutant's sub-index: the concentration it rests on and the curve it used."""

    pollutant: str
    averaging: str = Field(description="the averaging time of the curve: 1h, 8h or 24h")
    concentration: float | None = Field(description="median across passes of each pass's mean")
    unit: str
    passes: int
    drive_days: int
    iaqi: int | None = Field(description="null: the data does not meet the coverage rule")
    reason: str | None = Field(description="why there is no sub-index")


class SegmentAqi(BaseModel):
    """An indicative AQI: HJ 633 sub-indices of drive-pass medians, not a legal AQI (a
    moving vehicle never holds the 45 minutes of an hour that GB 3095 asks for)."""

    report: Literal["hourly", "daily"]
    standard: str
    indicative: bool = True
    aqi: int | None = Field(description="the largest sub-index; null without any")
    level: int | None = Field(description="1 to 6")
    category: str | None
    category_zh: str | None
    colour: str | None
    rgb: str | None
    primary_pollutants: list[str] = Field(description="at the AQI, when the AQI is above 50")
    complete: bool = Field(description="every one of the six pollutants has a sub-index")
    iaqi: list[SubIndex]


class SegmentStatsAqi(SegmentStats):
    aqi: SegmentAqi | None = Field(None, description="present when ?aqi= asks for it")


class SegmentStatsAqiPage(SegmentStatsPage):
    items: list[SegmentStatsAqi]  # type: ignore[assignment]


# --- analyser lags and calibration periods (docs/domain.md §5.8, §5.9) ------------------------


def _walkthrough_pollutant(value: str) -> str:
    if value not in POLLUTANTS:
        raise ValueError(f"must be one of {', '.join(POLLUTANTS)}")
    return value


#: A walk-through pollutant channel.
Pollutant = Annotated[str, AfterValidator(_walkthrough_pollutant)]


class AnalyserLag(BaseModel):
    """A vehicle's analyser lag for one pollutant: a value reported at t was sampled at
    t − lag_s. ``registered`` by hand, or ``estimated`` from the drives of
    [estimated_from, estimated_to) (``score``: the correlation's peak; ``details``: the
    source, the curve's sharpness and the readings it rests on)."""

    vehicle_id: str
    pollutant: str
    lag_s: float
    method: Literal["registered", "estimated"]
    estimated_from: datetime | None
    estimated_to: datetime | None
    score: float | None
    details: dict[str, Any] | None
    set_by: str
    set_at: datetime


class AnalyserLagsUpdate(BodyModel):
    """Lags to register, per pollutant, in seconds; null removes the pollutant's lag. The
    pollutants not named keep theirs."""

    lags_s: dict[Pollutant, Annotated[float, Field(ge=0, le=600)] | None] = Field(
        min_length=1, description='e.g. {"no2": 12.5, "co": 8}; at most TELEMETRY_LAG_MAX_S'
    )


CalibrationKind = Literal["zero", "span"]


class CalibrationCreate(BodyModel):
    """A zero or span calibration of a vehicle's analyser over [starts_at, ends_at), of one
    pollutant or (``pollutant`` null) of every one."""

    kind: CalibrationKind
    pollutant: Pollutant | None = None
    starts_at: Timestamp
    ends_at: Timestamp = Field(description="exclusive; after starts_at")
    note: Note | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CalibrationCreate:
        if self.starts_at >= self.ends_at:
            raise ValueError("starts_at must be before ends_at")
        return self


class CalibrationPeriod(BaseModel):
    id: int
    vehicle_id: str
    pollutant: str | None = Field(description="null: every pollutant")
    kind: CalibrationKind
    starts_at: datetime
    ends_at: datetime
    note: str | None
    created_by: str
    created_at: datetime


class CalibrationQuery(TimeWindow):
    """Periods overlapping the window (an open bound when absent), newest first."""

    limit: int = Field(100, ge=1, le=1000)


# --- extra channels of portable instruments (docs/domain.md §5.6) ---------------------------

MAX_EXTRA_WINDOW = timedelta(days=31)
DEFAULT_EXTRA_WINDOW = timedelta(days=1)


class ExtraSeriesQuery(TimeWindow):
    """One vehicle's extra channel over a window (by default the day ending at ``until``, or
    starting at ``since``; at most 31 days), oldest first, a page at a time."""

    vehicle_id: Name
    channel: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = (
        Field(description="the field's name as the readings send it")
    )
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, description="the previous page's next_cursor"
    )
    limit: int = Field(1000, ge=1, le=10_000)

    def resolved(self, now: datetime) -> tuple[datetime, datetime]:
        """``(since, until)`` with the defaults filled in relative to ``now``."""
        if self.until is not None:
            until = self.until
        elif self.since is not None:
            until = self.since + DEFAULT_EXTRA_WINDOW
        else:
            until = now
        since = self.since if self.since is not None else until - DEFAULT_EXTRA_WINDOW
        if until - since > MAX_EXTRA_WINDOW:
            raise ValueError("the window may span at most 31 days")
        return since, until


class ExtraPoint(BaseModel):
    ts: datetime
    lat: float
    lon: float
    value: Any = Field(description="as sent: usually a number")
    unit: str | None = Field(
        None,
        description="the unit the reading declared for the channel in its `units`; null: none "
        "(the series' `unit`, declared at registration, applies)",
    )


class ExtraSeries(BaseModel):
    vehicle_id: str
    channel: str
    unit: str | None = Field(
        description="the unit the vehicle declared for the channel at registration; null: none"
    )
    since: datetime
    until: datetime
    items: list[ExtraPoint]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )
