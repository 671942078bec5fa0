"""Request, query and response models of the walk-through routes: thresholds and tracks."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from telemetry.errors import ValidationError
from telemetry.kinds.contract import Kind
from telemetry.web import (
    BIGINT_MAX,
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
    "DataQualityDay",
    "DataQualityPage",
    "DataQualityQuery",
    "SegmentStats",
    "SegmentStatsPage",
    "SegmentStatsQuery",
    "Threshold",
    "ThresholdCreate",
    "ThresholdQuery",
    "Track",
    "TrackQuery",
]

MAX_TRACK_WINDOW = timedelta(hours=24)
DEFAULT_TRACK_WINDOW = timedelta(hours=1)
MAX_STATS_WINDOW = timedelta(days=366)
DEFAULT_STATS_WINDOW = timedelta(days=30)


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


# --- segment statistics (the street map) ----------------------------------------------------

StatsPollutant = Literal["pm25", "pm10", "no2", "o3", "so2", "co", "tvoc"]
_NUMBER = r"-?[0-9]{1,3}(\.[0-9]{1,12})?"
_BBOX = rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$"


class SegmentStatsQuery(TimeWindow):
    """Filters of ``GET /segments/stats``: a pollutant, a window (by default the 30 days
    ending at ``until``, or starting at ``since``; at most 366 days), a bounding box and a
    page of segments in id order."""

    pollutant: StatsPollutant
    bbox: str | None = Field(
        None,
        pattern=_BBOX,
        description="min_lon,min_lat,max_lon,max_lat in degrees (WGS 84): segments meeting it",
    )
    after: int | None = Field(
        None, ge=1, le=BIGINT_MAX, description="continue after this segment id"
    )
    limit: int = Field(1000, ge=1, le=5000)
    format: Literal["json", "geojson"] = "json"

    @model_validator(mode="after")
    def _box_ordered(self) -> Self:
        box = self.box()
        if box is not None:
            min_lon, min_lat, max_lon, max_lat = box
            if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
                raise ValueError(
                    "bbox must be min_lon,min_lat,max_lon,max_lat with longitudes within"
                    " -180..180, latitudes within -90..90, minimum not above maximum"
                )
        return self

    def box(self) -> tuple[float, float, float, float] | None:
        if self.bbox is None:
            return None
        a, b, c, d = (float(x) for x in self.bbox.split(","))
        return a, b, c, d

    def resolved(self, now: datetime) -> tuple[datetime, datetime]:
        """``(since, until)`` with the defaults filled in relative to ``now``."""
        if self.until is not None:
            until = self.until
        elif self.since is not None:
            until = self.since + DEFAULT_STATS_WINDOW
        else:
            until = now
        since = self.since if self.since is not None else until - DEFAULT_STATS_WINDOW
        if until - since > MAX_STATS_WINDOW:
            raise ValidationError("the statistics window may span at most 366 days")
        return since, until


class SegmentStats(BaseModel):
    """A segment's statistic over the window, by the method of mobile-monitoring studies
    (docs/domain.md §5.1): the median across drive passes of each pass's mean."""

    segment_id: int
    source: str
    road_ref: str
    seq: int
    name: str | None
    highway: str | None
    length_m: float
    pollutant: str
    unit: str
    median: float = Field(description="median across passes of each pass's mean")
    passes: int
    drive_days: int = Field(description="distinct China Standard Time days with a pass")
    reliable: bool = Field(description="drive_days reaches the configured minimum")
    geometry: LineString


class SegmentStatsPage(BaseModel):
    since: datetime
    until: datetime
    min_drive_days: int
    items: list[SegmentStats]
    next_after: int | None = Field(description="pass as ?after= for the next page; null at the end")


# --- data quality ---------------------------------------------------------------------------

MAX_QUALITY_WINDOW = timedelta(days=92)
DEFAULT_QUALITY_WINDOW = timedelta(days=7)


class DataQualityQuery(TimeWindow):
    """The window of the data-quality report (by default the 7 days ending at ``until``, or
    starting at ``since``; at most 92 days), optionally one vehicle."""

    vehicle: Name | None = None
    limit: int = Field(1000, ge=1, le=10_000)

    def resolved(self, now: datetime) -> tuple[datetime, datetime]:
        """``(since, until)`` with the defaults filled in relative to ``now``."""
        if self.until is not None:
            until = self.until
        elif self.since is not None:
            until = self.since + DEFAULT_QUALITY_WINDOW
        else:
            until = now
        since = self.since if self.since is not None else until - DEFAULT_QUALITY_WINDOW
        if until - since > MAX_QUALITY_WINDOW:
            raise ValidationError("the data-quality window may span at most 92 days")
        return since, until


class DataQualityDay(BaseModel):
    """One vehicle's walk-through readings on one China Standard Time day: stored, flagged
    other than ``N`` (HJ 212 data flag), and with a sensor fault, by fault."""

    vehicle_id: str
    day: date
    readings: int
    flagged: int
    faulty: int
    flatline: int
    range_limit: int
    step: int
    calibration: int = Field(
        description="readings with a channel under zero/span calibration (docs/domain.md §5.9),"
        " flagged by the vehicle or in a registered period; not counted as faulty"
    )


class DataQualityPage(BaseModel):
    since: datetime
    until: datetime
    items: list[DataQualityDay]
    truncated: bool = Field(description="true: more rows than limit; narrow the window")
