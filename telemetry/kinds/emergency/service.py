"""Emergency rules that read stored state: opening an incident over readings already stored,
the tier table, tier changes, and an incident's rapid assessment.

Routes call these; these call the repository and the pure detection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from telemetry.kinds.emergency import repository
from telemetry.kinds.emergency.checks import check_tier
from telemetry.kinds.emergency.detection import (
    Assessment,
    TierTable,
    Wind,
    assess,
    assign_incidents,
    mean_wind,
)
from telemetry.kinds.emergency.record import SubstanceTable
from telemetry.store import audit
from telemetry.store.audit import Actor

__all__ = [
    "WindRule",
    "add_tier",
    "assess_incident",
    "change_tier",
    "open_incident",
    "tier_table",
]

_ALWAYS_US = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)


async def open_incident(
    pool: asyncpg.Pool,
    *,
    name: str,
    lat: float,
    lon: float,
    started_at: dt.datetime | None,
    radius_m: float = 5000.0,
    suspected_substances: Sequence[str] = (),
    by: Actor,
    note: str | None = None,
) -> dict[str, Any]:
    """Open an incident (``started_at`` None: now) as ``by`` (its name is stored; audited)
    and return it.

    Readings already stored inside its radius since ``started_at`` that belong to no other
    incident become its readings (they count in its assessment; they raise no alerts after
    the fact). Ingest batches after the commit assign new readings to it.
    """
    async with pool.acquire() as conn, conn.transaction():
        await repository.lock_incidents(conn)
        incident = await repository.insert_incident(
            conn,
            name=name,
            lat=lat,
            lon=lon,
            started_at=started_at,
            radius_m=radius_m,
            suspected_substances=suspected_substances,
            by=by.name,
            note=note,
        )
        near = await repository.unassigned_readings_near(conn, incident)
        if near["ts_us"].shape[0]:
            match = assign_incidents(
                near["lat"],
                near["lon"],
                near["ts_us"],
                incident_lat=np.array([incident["lat"]]),
                incident_lon=np.array([incident["lon"]]),
                radius_m=np.array([incident["radius_m"]]),
                start_us=np.array([_ALWAYS_US[0]]),  # the window was applied in SQL
                end_us=np.array([_ALWAYS_US[1]]),
            )
            inside = match.incident >= 0
            if inside.any():
                await repository.assign_readings(
                    conn,
                    incident["id"],
                    vehicle_id=near["vehicle_id"][inside],
                    ts_us=near["ts_us"][inside],
                    substance=near["substance"][inside],
                    distance_m=match.distance_m[inside],
                    bearing_deg=match.bearing_deg[inside],
                )
        opened = await repository.get_incident(conn, incident["id"])
        await audit.record(
            conn,
            by,
            action="incident.open",
            entity="incident",
            entity_id=opened["id"],
            before=None,
            after=opened,
        )
        return opened


async def tier_table(
    conn: asyncpg.Pool | asyncpg.Connection,
) -> tuple[list[dict[str, Any]], TierTable]:
    """Every tier row, and the table built from them with the substances' molar masses."""
    rows = await repository.list_tiers(conn)
    substances = SubstanceTable.from_rows(await repository.list_substances(conn))
    return rows, TierTable.from_rows(rows, substances.molar_mass)


async def add_tier(pool: asyncpg.Pool, *, by: Actor, **fields: Any) -> dict[str, Any]:
    """Check a new tier's values, then add it as made ``by`` (see
    :func:`repository.create_tier`)."""
    check_tier(
        limit_value=fields["limit_value"],
        unit=fields["unit"],
        severity=fields["severity"],
        source=fields["source"],
        tier=fields["tier"],
        averaging=fields["averaging"],
    )
    return await repository.create_tier(pool, **fields, by=by)


async def change_tier(
    pool: asyncpg.Pool, tier_id: int, *, by: Actor, **fields: Any
) -> dict[str, Any]:
    """Check a tier's new values, then store them as made ``by`` (see
    :func:`repository.update_tier`)."""
    check_tier(
        limit_value=fields["limit_value"],
        unit=fields["unit"],
        severity=fields["severity"],
        source=fields["source"],
    )
    return await repository.update_tier(pool, tier_id, **fields, by=by)


@dataclass(frozen=True, slots=True)
class WindRule:
    """How the assessment uses the measured wind (docs/domain.md §4.6): the averaging window,
    the calm speed, the half angles of the downwind and upwind sectors, and how far from the
    source an upwind reading still serves as the control point."""

    window_s: float = 900.0
    calm_ms: float = 0.5
    downwind_half_deg: float = 45.0
    upwind_half_deg: float = 45.0
    control_max_m: float = 3000.0


async def assess_incident(
    pool: asyncpg.Pool,
    incident_id: int,
    *,
    substance: str | None,
    rings_km: Sequence[float],
    sectors: int,
    wind_rule: WindRule | None = None,
) -> tuple[dict[str, Any], Assessment, TierTable, Wind]:
    """The incident, its rapid assessment (optionally of one substance), the tiers used and
    the wind: the vector mean of the wind measured at the incident's readings, whose downwind
    axis the assessment's wind sectors and control point are relative to."""
    rule = wind_rule or WindRule()
    incident = await repository.get_incident(pool, incident_id)
    _, tiers = await tier_table(pool)
    readings = await repository.incident_readings(pool, incident_id)
    measured = await repository.incident_wind(pool, incident_id)
    wind = mean_wind(**measured, window_s=rule.window_s, calm_ms=rule.calm_ms)
    if substance is not None:
        wanted = readings["substance"] == substance.lower()
        readings = {name: column[wanted] for name, column in readings.items()}
    result = assess(
        **readings,
        tiers=tiers,
        rings_km=rings_km,
        sectors=sectors,
        downwind_deg=wind.downwind_deg,
        downwind_half_deg=rule.downwind_half_deg,
        upwind_half_deg=rule.upwind_half_deg,
        control_max_m=rule.control_max_m,
    )
    return incident, result, tiers, wind
