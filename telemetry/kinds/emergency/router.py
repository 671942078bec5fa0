"""Incidents and their rapid assessment: ``/api/v1/incidents``, plus the emergency tiers and
substances the assessment and the alerts use.

A newly opened incident applies to the ingest path from the next batch on (batches look up
incidents inside their transaction; nothing waits for a refresh). A tier added or changed here
applies to the assessment at once and to ingest workers at their next refresh.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, status

from telemetry.geo import destination
from telemetry.kinds.emergency import repository as store
from telemetry.kinds.emergency import service
from telemetry.kinds.emergency.detection import (
    WIND_SECTORS,
    Assessment,
    TierTable,
    Wind,
    sector_names,
    sector_polygon,
    wind_sector_bearings,
)
from telemetry.kinds.emergency.schemas import (
    AssessmentCell,
    AssessmentQuery,
    AssessmentWind,
    ControlPoint,
    ControlReadings,
    Incident,
    IncidentAssessment,
    IncidentClose,
    IncidentOpen,
    IncidentPage,
    IncidentQuery,
    ReceptorTier,
    Substance,
    SubstanceAssessment,
    Tier,
    TierCreate,
    TierReach,
    TierUpdate,
    WindSectorCell,
)
from telemetry.settings import Settings
from telemetry.web import (
    AdminDep,
    BigintId,
    IntegerId,
    OfficerDep,
    PoolDep,
    SettingsDep,
    error_responses,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["incidents"])

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@router.post(
    "/incidents",
    response_model=Incident,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403),
)
async def open_incident(pool: PoolDep, principal: OfficerDep, body: IncidentOpen) -> Incident:
    """Open an incident as the token's account (officer or admin). Emergency readings inside
    its radius from ``started_at`` on belong to it; readings already stored there are attached
    at once (they raise no alerts afterwards), and the ingest path applies it from its next
    batch."""
    row = await service.open_incident(
        pool,
        name=body.name,
        lat=body.lat,
        lon=body.lon,
        started_at=body.started_at,
        radius_m=body.radius_m,
        suspected_substances=body.suspected_substances,
        by=principal,
        note=body.note,
    )
    return Incident.model_validate(row)


@router.post(
    "/incidents/{incident_id}/close",
    response_model=Incident,
    responses=error_responses(400, 403, 404, 409),
)
async def close_incident(
    pool: PoolDep, principal: OfficerDep, incident_id: BigintId, body: IncidentClose | None = None
) -> Incident:
    """Close an open incident now and resolve its alerts, as the token's account (officer or
    admin); 404 if there is no such incident, 409 if it is already closed. The body is
    optional."""
    note = body.note if body is not None else None
    row = await store.close_incident(pool, incident_id, by=principal, note=note)
    return Incident.model_validate(row)


@router.get("/incidents", response_model=IncidentPage)
async def list_incidents(pool: PoolDep, query: Annotated[IncidentQuery, Query()]) -> IncidentPage:
    """Incidents newest first; filter ``status`` (open or closed)."""
    rows = await store.list_incidents(
        pool, status=query.status, before_id=query.before_id, limit=query.limit + 1
    )
    items = [Incident.model_validate(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return IncidentPage(items=items, next_before_id=items[-1].id if more else None)


@router.get("/incidents/{incident_id}", response_model=Incident, responses=error_responses(404))
async def get_incident(pool: PoolDep, incident_id: BigintId) -> Incident:
    """One incident; 404 if there is none."""
    return Incident.model_validate(await store.get_incident(pool, incident_id))


@router.get(
    "/incidents/{incident_id}/assessment",
    response_model=IncidentAssessment,
    responses=error_responses(404),
)
async def get_assessment(
    pool: PoolDep,
    settings: SettingsDep,
    incident_id: BigintId,
    query: Annotated[AssessmentQuery, Query()],
) -> IncidentAssessment:
    """The rapid assessment: per substance, the maximum and latest concentration by distance
    ring and direction sector from the source, the worst tier per cell, the sectors reaching
    each tier and the farthest distance each tier is exceeded at.

    With the wind the vehicles measured (``wind``: the vector mean of the latest readings,
    docs/domain.md §4.6): per substance, its readings by sector relative to the downwind axis
    (downwind, crosswind right and left, upwind), the upwind control readings, and whether
    any exist (``control_point``; ``lacks_control_point`` when none does, as HJ 589 asks for
    one). ``receptor``: the share of the substance's ambient reference value for receptors
    (GB 3095, HJ 2.2-2018 Appendix D; tiers with ``receptor`` true)."""
    incident, result, tiers, wind = await _assess(pool, settings, incident_id, query)
    return _assessment_model(incident, result, tiers, wind, settings)


async def _assess(
    pool: PoolDep, settings: Settings, incident_id: int, query: AssessmentQuery
) -> tuple[dict[str, Any], Assessment, TierTable, Wind]:
    return await service.assess_incident(
        pool,
        incident_id,
        substance=query.substance,
        rings_km=query.rings(),
        sectors=query.sectors,
        wind_rule=_wind_rule(settings),
    )


def _wind_rule(settings: Settings) -> service.WindRule:
    return service.WindRule(
        window_s=settings.emergency_wind_window_s,
        calm_ms=settings.emergency_wind_calm_ms,
        downwind_half_deg=settings.emergency_downwind_half_angle_deg,
        upwind_half_deg=settings.emergency_upwind_half_angle_deg,
        control_max_m=settings.emergency_control_max_m,
    )


@router.get("/incidents/{incident_id}/assessment.geojson", responses=error_responses(404))
async def get_assessment_geojson(
    pool: PoolDep,
    settings: SettingsDep,
    incident_id: BigintId,
    query: Annotated[AssessmentQuery, Query()],
) -> dict[str, Any]:
    """The assessment as a GeoJSON FeatureCollection: the source point (with the wind and
    the control point), the downwind axis as a line to the outermost ring when there is one,
    then one polygon per substance and non-empty ring × sector, with its readings, max,
    latest and worst tier."""
    incident, result, tiers, wind = await _assess(pool, settings, incident_id, query)
    body = _assessment_model(incident, result, tiers, wind, settings)
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [incident["lon"], incident["lat"]]},
            "properties": {
                "feature": "source",
                **body.incident.model_dump(mode="json"),
                "wind": body.wind.model_dump(mode="json"),
                "control_point": body.control_point.model_dump(mode="json"),
            },
        }
    ]
    if body.wind.downwind_deg is not None:
        lat, lon = destination(
            incident["lat"], incident["lon"], np.array([body.wind.downwind_deg]),
            float(result.edges_m[-1]),
        )  # fmt: skip
        features.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [
                        [incident["lon"], incident["lat"]],
                        [round(float(lon[0]), 7), round(float(lat[0]), 7)],
                    ],
                },
                "properties": {"feature": "downwind_axis", **body.wind.model_dump(mode="json")},
            }
        )
    for sub in body.substances:
        for cell in sub.cells:
            ring = sector_polygon(
                incident["lat"],
                incident["lon"],
                cell.ring_km[0] * 1000.0,
                cell.ring_km[1] * 1000.0,
                cell.from_deg,
                cell.to_deg,
            )
            props = cell.model_dump(mode="json")
            props["ring_km"] = list(cell.ring_km)
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {
                        "feature": "cell",
                        "substance": sub.substance,
                        "unit": sub.unit,
                        **props,
                    },
                }
            )
    return {"type": "FeatureCollection", "features": features}


async def _tiers(pool: PoolDep) -> list[Tier]:
    """Every tier, with the severity its alerts carry."""
    rows, table = await service.tier_table(pool)
    return [
        Tier.model_validate(r | {"alert_severity": table.severity[i]}) for i, r in enumerate(rows)
    ]


async def _tier(pool: PoolDep, tier_id: int) -> Tier:
    [tier] = [t for t in await _tiers(pool) if t.id == tier_id]
    return tier


@router.get("/emergency/tiers", response_model=list[Tier])
async def get_tiers(pool: PoolDep) -> list[Tier]:
    """The tiered thresholds per substance, with their source and whether they are confirmed.
    ``alert_severity`` is the severity alerts carry (never below a lower tier's)."""
    return await _tiers(pool)


@router.post(
    "/emergency/tiers",
    response_model=Tier,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403, 409),
)
async def add_tier(pool: PoolDep, principal: AdminDep, body: TierCreate) -> Tier:
    """Add a tier to a known substance (admin; audited as the token's account); 409 if the
    substance already has a tier of that name, 422 for an unknown substance, unit or
    severity, or (for a substance without a molar mass) a unit in another basis than its
    other tiers.

    Ingest workers apply the change at their next refresh, every
    min(TELEMETRY_SEGMENTS_REFRESH_S, TELEMETRY_THRESHOLDS_REFRESH_S) seconds; readings
    already stored keep their alerts."""
    row = await service.add_tier(pool, **body.model_dump(), by=principal)
    return await _tier(pool, row["id"])


@router.put(
    "/emergency/tiers/{tier_id}", response_model=Tier, responses=error_responses(400, 403, 404)
)
async def change_tier(
    pool: PoolDep, principal: AdminDep, tier_id: IntegerId, body: TierUpdate
) -> Tier:
    """Replace a tier's limit, unit, severity, source, confirmed flag and note (admin; audited
    as the token's account); 404 for an unknown tier, 422 for a bad value.

    Ingest workers apply the change at their next refresh, every
    min(TELEMETRY_SEGMENTS_REFRESH_S, TELEMETRY_THRESHOLDS_REFRESH_S) seconds; readings
    already stored keep their alerts."""
    row = await service.change_tier(pool, tier_id, **body.model_dump(), by=principal)
    return await _tier(pool, row["id"])


@router.get("/emergency/substances", response_model=list[Substance])
async def get_substances(pool: PoolDep) -> list[Substance]:
    """The substances known by name, with aliases and the molar mass used for ppm ↔ mg/m³."""
    return [Substance.model_validate(r) for r in await store.list_substances(pool)]


# --- assessment ------------------------------------------------------------------------------


def _time(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _tier_name(tiers: TierTable, position: int) -> tuple[str | None, str | None]:
    if position < 0:
        return None, None
    return str(tiers.tier[position]), str(tiers.severity[position])


def _wind_model(wind: Wind, settings: Settings) -> AssessmentWind:
    return AssessmentWind(
        readings=wind.readings,
        window_s=settings.emergency_wind_window_s,
        since=_time(wind.first_us) if wind.readings else None,
        until=_time(wind.last_us) if wind.readings else None,
        speed_ms=_optional(wind.speed_ms),
        mean_speed_ms=_optional(wind.mean_speed_ms),
        from_deg=_optional(wind.from_deg),
        downwind_deg=_optional(wind.downwind_deg),
        steadiness=_optional(wind.steadiness),
        calm=wind.calm,
    )


def _wind_cells(
    result: Assessment, tiers: TierTable, g: int, wind: Wind, settings: Settings
) -> list[WindSectorCell]:
    """Group ``g``'s cells relative to the downwind axis."""
    if np.isnan(wind.from_deg):
        return []
    bearings = wind_sector_bearings(
        wind.downwind_deg,
        downwind_half_deg=settings.emergency_downwind_half_angle_deg,
        upwind_half_deg=settings.emergency_upwind_half_angle_deg,
    )
    cells = []
    for k in np.flatnonzero(result.wind_group == g).tolist():
        sector = int(result.wind_sector[k])
        worst, severity = _tier_name(tiers, int(result.wind_tier[k]))
        cells.append(
            WindSectorCell(
                sector=WIND_SECTORS[sector],
                from_deg=round(bearings[sector][0], 3),
                to_deg=round(bearings[sector][1], 3),
                readings=int(result.wind_count[k]),
                max=float(result.wind_max[k]),
                latest=float(result.wind_latest[k]),
                latest_at=_time(int(result.wind_latest_us[k])),
                worst_tier=worst,
                severity=severity,
                farthest_m=float(result.wind_farthest_m[k]),
            )
        )
    return cells


def _control(result: Assessment, g: int) -> ControlReadings | None:
    if result.control_count[g] == 0:
        return None
    return ControlReadings(
        readings=int(result.control_count[g]),
        latest=float(result.control_latest[g]),
        latest_at=_time(int(result.control_latest_us[g])),
        median=float(result.control_median[g]),
        nearest_m=float(result.control_nearest_m[g]),
    )


def _receptor(result: Assessment, tiers: TierTable, g: int) -> ReceptorTier | None:
    row = int(result.receptor_tier[g])
    if row < 0:
        return None
    return ReceptorTier(
        tier=str(tiers.tier[row]),
        limit=float(tiers.limit[row]),
        unit=tiers.basis_unit(row),
        limit_value=float(tiers.limit_value[row]),
        limit_unit=str(tiers.unit[row]),
        averaging=str(tiers.averaging[row]),
        source=str(tiers.source[row]),
        confirmed=bool(tiers.confirmed[row]),
        note=tiers.note[row],
        max_ratio=float(result.receptor_max_ratio[g]),
        latest_ratio=float(result.receptor_latest_ratio[g]),
        readings_over=int(result.receptor_over[g]),
    )


def _control_point(
    result: Assessment, wind: Wind, settings: Settings, substances: list[str]
) -> ControlPoint:
    reason = None
    if not substances:
        if wind.readings == 0:
            reason = "no reading measured the wind, so upwind is unknown"
        elif wind.calm:
            reason = "the wind is calm, so upwind is undefined"
        else:
            reason = (
                f"no reading upwind of the source within {settings.emergency_control_max_m:g} m"
            )
    return ControlPoint(
        present=bool(substances),
        reason=reason,
        max_distance_m=settings.emergency_control_max_m,
        upwind_half_angle_deg=settings.emergency_upwind_half_angle_deg,
        substances=substances,
    )


def _assessment_model(
    incident: dict[str, Any],
    result: Assessment,
    tiers: TierTable,
    wind: Wind,
    settings: Settings,
) -> IncidentAssessment:
    """Shape the arrays of :class:`Assessment` (one loop step per cell and tier, not per
    reading)."""
    edges_km = (result.edges_m / 1000.0).tolist()
    width = 360.0 / result.sectors
    names = sector_names(result.sectors)
    substances = []
    for g in range(result.group_substance.shape[0]):
        cells = []
        for c in np.flatnonzero(result.cell_group == g).tolist():
            ring, sector = int(result.cell_ring[c]), int(result.cell_sector[c])
            worst, severity = _tier_name(tiers, int(result.cell_tier[c]))
            cells.append(
                AssessmentCell(
                    ring=ring,
                    ring_km=(edges_km[ring], edges_km[ring + 1]),
                    sector=sector,
                    sector_name=names[sector],
                    from_deg=(sector * width - width / 2) % 360.0,
                    to_deg=(sector * width + width / 2) % 360.0,
                    readings=int(result.cell_count[c]),
                    max=float(result.cell_max[c]),
                    latest=float(result.cell_latest[c]),
                    latest_at=_time(int(result.cell_latest_us[c])),
                    worst_tier=worst,
                    severity=severity,
                )
            )
        reaches = []
        for k in np.flatnonzero(result.reach_group == g).tolist():
            row = int(result.reach_tier[k])
            hit = np.flatnonzero(result.reach_sectors[k]).tolist()
            reaches.append(
                TierReach(
                    tier=str(tiers.tier[row]),
                    severity=str(tiers.severity[row]),
                    limit=float(tiers.limit[row]),
                    unit=tiers.basis_unit(row),
                    source=str(tiers.source[row]),
                    confirmed=bool(tiers.confirmed[row]),
                    readings=int(result.reach_count[k]),
                    sectors=hit,
                    sector_names=[names[s] for s in hit],
                    farthest_m=_optional(float(result.reach_farthest_m[k])),
                )
            )
        worst, severity = _tier_name(tiers, int(result.group_tier[g]))
        substances.append(
            SubstanceAssessment(
                substance=str(result.group_substance[g]),
                unit=str(result.group_unit[g]),
                readings=int(result.group_count[g]),
                max=float(result.group_max[g]),
                latest=float(result.group_latest[g]),
                latest_at=_time(int(result.group_latest_us[g])),
                worst_tier=worst,
                severity=severity,
                farthest_exceeding_m=_optional(float(result.group_farthest_m[g])),
                outside_rings=int(result.group_outside[g]),
                tiers=reaches,
                cells=cells,
                wind_sectors=_wind_cells(result, tiers, g, wind, settings),
                control=_control(result, g),
                receptor=_receptor(result, tiers, g),
            )
        )
    controlled = sorted({s.substance for s in substances if s.control is not None})
    control_point = _control_point(result, wind, settings, controlled)
    return IncidentAssessment(
        incident=Incident.model_validate(incident),
        rings_km=edges_km,
        sectors=result.sectors,
        sector_width_deg=width,
        readings=int(result.group_count.sum()),
        wind=_wind_model(wind, settings),
        downwind_half_angle_deg=settings.emergency_downwind_half_angle_deg,
        control_point=control_point,
        lacks_control_point=not control_point.present,
        substances=substances,
    )
