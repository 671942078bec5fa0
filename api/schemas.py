"""Request, query and response models of the HTTP API.

Query models are composed by inheritance (a time window, a page) and validated as a whole,
so a bad combination (``since`` after ``until``, a window too wide) is a 422 like any other.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from telemetry.errors import ValidationError
from telemetry.kinds import Kind

__all__ = [
    "Alert",
    "AlertAction",
    "AlertPage",
    "AlertQuery",
    "AlertStatus",
    "Check",
    "DeadLetter",
    "DeadLetterPage",
    "DeadLetterQuery",
    "Health",
    "LineString",
    "Segment",
    "SegmentHour",
    "SegmentQuery",
    "Threshold",
    "ThresholdCreate",
    "ThresholdQuery",
    "Track",
    "TrackQuery",
    "Vehicle",
    "VehiclePage",
    "VehicleQuery",
    "decode_cursor",
    "encode_cursor",
]

AlertStatus = Literal["open", "acknowledged", "resolved"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Note = Annotated[str, StringConstraints(max_length=2000)]

MAX_TRACK_WINDOW = timedelta(hours=24)
DEFAULT_TRACK_WINDOW = timedelta(hours=1)


# --- cursors -------------------------------------------------------------------------------

_CURSOR_PREFIX = "alerts:"


def encode_cursor(before_id: int) -> str:
    """An opaque cursor that continues a listing below ``before_id``."""
    raw = f"{_CURSOR_PREFIX}{before_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues below, or :class:`ValidationError`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError(f"invalid cursor {cursor!r}") from None
    value = raw.removeprefix(_CURSOR_PREFIX)
    if value == raw or not value.isdigit() or int(value) < 1:
        raise ValidationError(f"invalid cursor {cursor!r}")
    return int(value)


# --- query models --------------------------------------------------------------------------


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


class TimeWindow(_Query):
    """An optional window ``[since, until)``; times must carry a UTC offset."""

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class AlertQuery(TimeWindow):
    """Filters of ``GET /alerts``; ``since``/``until`` select episodes overlapping the window."""

    status: list[AlertStatus] = Field(default_factory=list)
    kind: Kind | None = None
    pollutant: Name | None = None
    vehicle: Name | None = None
    segment: int | None = Field(None, ge=1)
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=200)


class TrackQuery(TimeWindow):
    """The window of a vehicle track: by default the last hour, never more than 24 hours."""

    def resolved(self, now: datetime) -> tuple[datetime, datetime]:
        """``(since, until)`` with the defaults filled in relative to ``now``."""
        if self.until is not None:
            until = self.until
        elif self.since is not None:
            until = self.since + DEFAULT_TRACK_WINDOW
        else:
            until = now
        since = self.since if self.since is not None else until - DEFAULT_TRACK_WINDOW
        if until - since > MAX_TRACK_WINDOW:
            raise ValidationError("the track window may span at most 24 hours")
        return since, until


class VehicleQuery(_Query):
    kind: Kind | None = None
    online: bool | None = None
    after: Name | None = Field(None, description="continue after this vehicle id")
    limit: int = Field(1000, ge=1, le=10_000)


class SegmentQuery(_Query):
    hours: int = Field(24, ge=1, le=24 * 31, description="hourly statistics for this many hours")


class ThresholdQuery(_Query):
    kind: Kind | None = None


class DeadLetterQuery(_Query):
    reason: Name | None = None
    kind: Name | None = None
    before_id: int | None = Field(None, ge=1)
    limit: int = Field(100, ge=1, le=1000)


# --- alerts --------------------------------------------------------------------------------


class Alert(BaseModel):
    """One alert episode: an exceedance on a subject that lasts until it is resolved."""

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
    peak_multiple: float
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


class AlertPage(BaseModel):
    items: list[Alert]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class AlertAction(BaseModel):
    """Who acknowledges or resolves an alert, and why."""

    model_config = ConfigDict(extra="forbid")

    by: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
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


class LineString(BaseModel):
    type: Literal["LineString"]
    coordinates: list[tuple[float, float]]


class Point(BaseModel):
    type: Literal["Point"]
    coordinates: tuple[float, float]


class TrackPathProperties(BaseModel):
    vehicle_id: str
    points: int
    first_ts: datetime
    last_ts: datetime


class TrackPointProperties(BaseModel):
    ts: datetime
    segment_id: int | None
    flag: str
    pm25: float | None
    pm10: float | None
    no2: float | None
    o3: float | None
    so2: float | None
    co: float | None
    tvoc: float | None


class TrackPath(BaseModel):
    type: Literal["Feature"]
    geometry: LineString
    properties: TrackPathProperties


class TrackPoint(BaseModel):
    type: Literal["Feature"]
    geometry: Point
    properties: TrackPointProperties


class Track(BaseModel):
    """GeoJSON: the path (when it has two points or more), then one point per reading."""

    type: Literal["FeatureCollection"]
    features: list[TrackPath | TrackPoint]


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


class Threshold(BaseModel):
    id: int
    kind: str
    pollutant: str
    limit_value: float
    unit: str
    averaging: str
    source: str
    tier: str
    severity: str
    effective_from: date
    effective_to: date | None
    confirmed: bool
    note: str | None
    created_at: datetime | None = None


class ThresholdCreate(BaseModel):
    """A new limit: operators revise a standard by adding a row with its effective dates."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    kind: Kind
    pollutant: Name
    limit_value: float = Field(gt=0)
    unit: Name
    averaging: Name
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    tier: Name = "limit"
    severity: Name = "warning"
    effective_from: date
    effective_to: date | None = Field(None, description="exclusive; null: open-ended")
    confirmed: bool = True
    note: Note | None = None

    @model_validator(mode="after")
    def _dates_ordered(self) -> Self:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        return self


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
