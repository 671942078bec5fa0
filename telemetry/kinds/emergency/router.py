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

from telemetry.kinds.emergency import repository as store
from telemetry.kinds.emergency import service
from telemetry.kinds.emergency.detection import (
    Assessment,
    TierTable,
    sector_names,
    sector_polygon,
)
from telemetry.kinds.emergency.schemas import (
    AssessmentCell,
    AssessmentQuery,
    Incident,
    IncidentAssessment,
    IncidentClose,
    IncidentOpen,
    IncidentPage,
    IncidentQuery,
    Substance,
    SubstanceAssessment,
    Tier,
    TierCreate,
    TierReach,
    TierUpdate,
)
from telemetry.web import AdminDep, BigintId, IntegerId, OfficerDep, PoolDep, error_responses

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
    pool: PoolDep, incident_id: BigintId, query: Annotated[AssessmentQuery, Query()]
) -> IncidentAssessment:
    """The rapid assessment: per substance, the maximum and latest concentration by distance
    ring and direction sector from the source, the worst tier per cell, the sectors reaching
    each tier and the farthest distance each tier is exceeded at."""
    incident, result, tiers = await service.assess_incident(
        pool,
        incident_id,
        substance=query.substance,
        rings_km=query.rings(),
        sectors=query.sectors,
    )
    return _assessment_model(incident, result, tiers)


@router.get("/incidents/{incident_id}/assessment.geojson", responses=error_responses(404))
async def get_assessment_geojson(
    pool: PoolDep, incident_id: BigintId, query: Annotated[AssessmentQuery, Query()]
) -> dict[str, Any]:
    """The assessment as a GeoJSON FeatureCollection: the source point, then one polygon per
    substance and non-empty ring × sector, with its readings, max, latest and worst tier."""
    incident, result, tiers = await service.assess_incident(
        pool,
        incident_id,
        substance=query.substance,
        rings_km=query.rings(),
        sectors=query.sectors,
    )
    body = _assessment_model(incident, result, tiers)
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [incident["lon"], incident["lat"]]},
            "properties": {
                "feature": "source",
                **body.incident.model_dump(mode="json"),
            },
        }
    ]
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


def _assessment_model(
    incident: dict[str, Any], result: Assessment, tiers: TierTable
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
            )
        )
    return IncidentAssessment(
        incident=Incident.model_validate(incident),
        rings_km=edges_km,
        sectors=result.sectors,
        sector_width_deg=width,
        readings=int(result.group_count.sum()),
        substances=substances,
    )
