"""Request, query and response models of the incident and emergency endpoints."""

from __future__ import annotations

import math
from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from telemetry.kinds.emergency.detection import DEFAULT_RINGS_KM, DEFAULT_SECTORS
from telemetry.web import (
    BIGINT_MAX,
    BodyModel,
    LimitValue,
    Name,
    Note,
    QueryModel,
    Text,
    Timestamp,
    Who,
)

__all__ = [
    "AssessmentCell",
    "AssessmentQuery",
    "AssessmentWind",
    "ControlPoint",
    "ControlReadings",
    "Incident",
    "IncidentAssessment",
    "IncidentClose",
    "IncidentOpen",
    "IncidentPage",
    "IncidentQuery",
    "ReceptorTier",
    "Substance",
    "SubstanceAssessment",
    "Tier",
    "TierCreate",
    "TierReach",
    "TierUpdate",
    "WindSectorCell",
]

SubstanceName = Name
Source = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
TierUnit = Literal["ppm", "ppb", "mg/m3", "ug/m3"]
Severity = Literal["info", "warning", "critical"]

MAX_RINGS = 20
#: Half the Earth's circumference: no reading can be farther from a source.
MAX_RING_KM = 20_000.0


_IGNORED_BY = "ignored: the token's account is recorded, whatever this says"


class IncidentOpen(BodyModel):
    """A duty officer opens an incident at a release point; the token's account is recorded
    as the one who opened it."""

    name: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    started_at: Timestamp | None = Field(
        None, description="with a UTC offset, from 0001-01-02 to 9999-12-30; default: now"
    )
    suspected_substances: list[SubstanceName] = Field(default_factory=list, max_length=50)
    radius_m: float = Field(5000.0, gt=0, le=100_000)
    by: Who | None = Field(None, deprecated=True, description=_IGNORED_BY)
    note: Note | None = None


class IncidentClose(BodyModel):
    """Why an incident is closed. The token's account is recorded as the one who closed it."""

    by: Who | None = Field(None, deprecated=True, description=_IGNORED_BY)
    note: Note | None = None


class Incident(BaseModel):
    id: int
    name: str
    status: Literal["open", "closed"]
    lat: float
    lon: float
    started_at: datetime
    closed_at: datetime | None
    radius_m: float
    suspected_substances: list[str]
    opened_by: str
    closed_by: str | None
    note: str | None
    created_at: datetime
    readings: int = Field(description="emergency readings that belong to the incident")

    @model_validator(mode="before")
    @classmethod
    def _status(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" not in data:
            return data | {"status": "open" if data.get("closed_at") is None else "closed"}
        return data


class IncidentPage(BaseModel):
    items: list[Incident]
    next_before_id: int | None = Field(description="pass as ?before_id= for the next page")


class IncidentQuery(QueryModel):
    status: Literal["open", "closed"] | None = None
    before_id: int | None = Field(
        None, ge=1, le=BIGINT_MAX, description="the previous page's next_before_id"
    )
    limit: int = Field(50, ge=1, le=500)


class AssessmentQuery(QueryModel):
    """Rings and sectors of the rapid assessment."""

    rings_km: Annotated[Text, StringConstraints(max_length=200)] = Field(
        ",".join(f"{r:g}" for r in DEFAULT_RINGS_KM),
        description=(
            f"outer radii of the distance rings in km, comma-separated: 1 to {MAX_RINGS}"
            f" numbers, positive, strictly increasing, at most {MAX_RING_KM:g}"
        ),
    )
    sectors: int = Field(DEFAULT_SECTORS, ge=1, le=360, description="direction sectors")
    substance: SubstanceName | None = Field(None, description="only this substance")

    @model_validator(mode="after")
    def _rings(self) -> Self:
        self.rings()
        return self

    def rings(self) -> list[float]:
        """The ring radii as numbers; ValueError (a 422) unless they are increasing radii
        on Earth."""
        try:
            values = [float(x) for x in self.rings_km.split(",") if x.strip()]
        except ValueError:
            raise ValueError("rings_km must be comma-separated numbers") from None
        if not values or len(values) > MAX_RINGS:
            raise ValueError(f"rings_km needs 1 to {MAX_RINGS} radii")
        if not all(math.isfinite(v) for v in values) or values[-1] > MAX_RING_KM:
            raise ValueError(f"rings_km must be at most {MAX_RING_KM:g} km")
        if values[0] <= 0 or any(b <= a for a, b in pairwise(values)):
            raise ValueError("rings_km must be positive and strictly increasing")
        return values


class Substance(BaseModel):
    name: str
    formula: str | None
    molar_mass_g_mol: float | None
    aliases: list[str]
    source: str
    note: str | None


class Tier(BaseModel):
    id: int
    substance: str
    tier: str
    limit_value: float
    unit: str
    averaging: str
    severity: str = Field(description="as configured")
    alert_severity: str = Field(description="as alerted: never below a lower tier's")
    source: str
    confirmed: bool
    note: str | None
    receptor: bool = Field(
        description="an ambient reference value for receptors: reported by the assessment, "
        "never alerted"
    )


class TierUpdate(BodyModel):
    """A tier's new limit (in ``unit``), severity, source, confirmed flag and note. Every
    field is replaced; the substance, the tier's name and its averaging time stay."""

    limit_value: LimitValue
    unit: TierUnit
    severity: Severity
    source: Source
    confirmed: bool = Field(description="false: not yet checked against the source")
    note: Note | None = None


class TierCreate(TierUpdate):
    """A new tier of a known substance (its name or an alias). It takes its place among the
    substance's tiers by concentration; a substance without a molar mass keeps all its tiers
    in one basis (volume: ppm, ppb; or mass: mg/m3, ug/m3)."""

    substance: SubstanceName
    tier: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")] = Field(
        description="lower case, e.g. occupational, rel, erpg2, idlh; alerts use tier:<tier>"
    )
    averaging: Name = Field(description="the exposure time the value is defined for, e.g. 60min")
    receptor: bool = Field(
        False,
        description="an ambient reference value for receptors (docs/domain.md §4.5), e.g. "
        "tier ambient: the assessment reports the share of it, no alert is raised",
    )


class TierReach(BaseModel):
    """How far and in which directions readings reach at least this tier."""

    tier: str
    severity: str
    limit: float
    unit: str
    source: str
    confirmed: bool
    readings: int
    sectors: list[int]
    sector_names: list[str]
    farthest_m: float | None


class AssessmentCell(BaseModel):
    ring: int
    ring_km: tuple[float, float]
    sector: int
    sector_name: str
    from_deg: float
    to_deg: float
    readings: int
    max: float
    latest: float
    latest_at: datetime
    worst_tier: str | None
    severity: str | None


WindSectorName = Literal["downwind", "crosswind_right", "upwind", "crosswind_left"]


class WindSectorCell(BaseModel):
    """A substance's readings in one sector relative to the downwind axis."""

    sector: WindSectorName
    from_deg: float = Field(description="bearing from the source where the sector starts")
    to_deg: float = Field(description="bearing where it ends, clockwise")
    readings: int
    max: float
    latest: float
    latest_at: datetime
    worst_tier: str | None
    severity: str | None
    farthest_m: float


class ControlReadings(BaseModel):
    """A substance's upwind control readings (HJ 589's 对照点)."""

    readings: int
    latest: float
    latest_at: datetime
    median: float
    nearest_m: float = Field(description="distance from the source of the nearest of them")


class ReceptorTier(BaseModel):
    """The substance's ambient reference value for receptors and the readings' share of it,
    C/S (占标率): an indicator, not a valid average (docs/domain.md §2.3, §4.5)."""

    tier: str
    limit: float = Field(description="in the unit of the substance's values here")
    unit: str
    limit_value: float = Field(description="as configured")
    limit_unit: str
    averaging: str
    source: str
    confirmed: bool
    note: str | None
    max_ratio: float
    latest_ratio: float
    readings_over: int = Field(description="readings above the reference value")


class SubstanceAssessment(BaseModel):
    substance: str
    unit: str = Field(description="the unit of every value here: ppm, or mg/m3")
    readings: int
    max: float
    latest: float
    latest_at: datetime
    worst_tier: str | None
    severity: str | None
    farthest_exceeding_m: float | None = Field(
        description="distance from the source of the farthest reading over any tier"
    )
    outside_rings: int = Field(description="readings beyond the outermost ring")
    tiers: list[TierReach]
    cells: list[AssessmentCell]
    wind_sectors: list[WindSectorCell] = Field(
        description="by sector relative to the downwind axis; empty without one"
    )
    control: ControlReadings | None = Field(description="null: no upwind control reading")
    receptor: ReceptorTier | None = Field(
        description="null: the substance has no receptor tier its values compare with"
    )


class AssessmentWind(BaseModel):
    """The vector mean of the wind measured at the incident's readings (once per vehicle
    and time) within ``window_s`` of the latest of them."""

    readings: int
    window_s: float
    since: datetime | None
    until: datetime | None
    speed_ms: float | None = Field(description="speed of the vector mean")
    mean_speed_ms: float | None = Field(description="mean of the speeds")
    from_deg: float | None = Field(
        description="where the mean wind blows from, clockwise from north (meteorological)"
    )
    downwind_deg: float | None = Field(description="where it blows to: the downwind axis")
    steadiness: float | None = Field(description="speed_ms / mean_speed_ms; 1: steady")
    calm: bool = Field(description="the vector mean is below the calm speed: no axis")


class ControlPoint(BaseModel):
    """Whether an upwind control reading exists (HJ 589 asks for a control point upwind)."""

    present: bool
    reason: str | None = Field(description="why there is none")
    max_distance_m: float
    upwind_half_angle_deg: float
    substances: list[str] = Field(description="substances with a control reading")


class IncidentAssessment(BaseModel):
    incident: Incident
    rings_km: list[float] = Field(description="ring edges, starting at 0")
    sectors: int
    sector_width_deg: float
    readings: int
    wind: AssessmentWind
    downwind_half_angle_deg: float
    control_point: ControlPoint
    lacks_control_point: bool = Field(
        description="true: no upwind control reading, so nothing tells the background apart"
    )
    substances: list[SubstanceAssessment]
