"""Request, query and response models of the HTTP API.

Query models are composed by inheritance (a time window, a page) and validated as a whole,
so a bad combination (``since`` after ``until``, a window too wide) is a 422 like any other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from telemetry.accounts.model import NAME_PATTERN, Role
from telemetry.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from telemetry.kinds.contract import Kind
from telemetry.web import (
    BIGINT_MAX,
    TEXT_PATTERN,
    BodyModel,
    LineString,
    Name,
    Note,
    QueryModel,
    Text,
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
    "AuditEntry",
    "AuditPage",
    "AuditQuery",
    "Check",
    "DeadLetter",
    "DeadLetterPage",
    "DeadLetterQuery",
    "Health",
    "Me",
    "Segment",
    "SegmentHour",
    "SegmentQuery",
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
