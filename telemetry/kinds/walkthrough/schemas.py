"""Request, query and response models of the walk-through routes: thresholds and tracks."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from telemetry.errors import ValidationError
from telemetry.kinds.contract import Kind
from telemetry.web import (
    BodyModel,
    LimitValue,
    LineString,
    Name,
    Note,
    Point,
    QueryModel,
    Text,
    TimeWindow,
)

__all__ = [
    "Threshold",
    "ThresholdCreate",
    "ThresholdQuery",
    "Track",
    "TrackQuery",
]

MAX_TRACK_WINDOW = timedelta(hours=24)
DEFAULT_TRACK_WINDOW = timedelta(hours=1)


class TrackQuery(TimeWindow):
    """The window of a vehicle track: by default the last hour (ending at ``until``, or
    starting at ``since``), never more than 24 hours."""

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


class ThresholdQuery(QueryModel):
    kind: Kind | None = None


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


class ThresholdCreate(BodyModel):
    """A new limit: operators revise a standard by adding a row with its effective dates.
    ``effective_to``, when given, must be after ``effective_from``; the period must not
    overlap another row of the same kind, pollutant and tier (409)."""

    model_config = ConfigDict(use_enum_values=True)

    kind: Kind
    pollutant: Name
    limit_value: LimitValue
    unit: Name
    averaging: Name
    source: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
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
