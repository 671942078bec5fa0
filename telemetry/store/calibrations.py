"""Table ``calibration_periods``: zero/span calibrations an operator registered for a vehicle
(docs/domain.md §5.9). Creating and deleting one is audited (entity ``calibration_period``)
in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from telemetry.errors import NotFoundError, ValidationError
from telemetry.store import audit
from telemetry.store.audit import Actor
from telemetry.store.errors import constraint_errors

__all__ = [
    "create_period",
    "delete_period",
    "list_periods",
    "overlapping_periods",
]

_COLUMNS = "id, vehicle_id, pollutant, kind, starts_at, ends_at, note, created_by, created_at"


async def create_period(
    pool: asyncpg.Pool,
    vehicle_id: str,
    *,
    kind: str,
    starts_at: datetime,
    ends_at: datetime,
    pollutant: str | None = None,
    note: str | None = None,
    max_duration_s: float | None = None,
    by: Actor,
) -> dict[str, Any]:
    """Register a calibration of ``vehicle_id`` over ``[starts_at, ends_at)`` (``pollutant``
    None: every channel) and return its row. :class:`ValidationError` for an empty period, one
    longer than ``max_duration_s`` or a value the table refuses."""
    if not starts_at < ends_at:
        raise ValidationError("starts_at must be before ends_at")
    if max_duration_s is not None and (ends_at - starts_at).total_seconds() > max_duration_s:
        raise ValidationError(
            f"a calibration period lasts at most {max_duration_s:g} s; register several"
        )
    async with pool.acquire() as conn, conn.transaction():
        with constraint_errors():
            row = await conn.fetchrow(
                "INSERT INTO calibration_periods (vehicle_id, pollutant, kind, starts_at, ends_at,"
                " note, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                f" RETURNING {_COLUMNS}",
                vehicle_id,
                pollutant,
                kind,
                starts_at,
                ends_at,
                note,
                by.name,
            )
        assert row is not None
        await audit.record(
            conn,
            by,
            action="calibration_period.create",
            entity="calibration_period",
            entity_id=row["id"],
            before=None,
            after=row,
        )
    return dict(row)


async def delete_period(pool: asyncpg.Pool, vehicle_id: str, period_id: int, *, by: Actor) -> None:
    """Remove a registered period of ``vehicle_id``; :class:`NotFoundError` if it has none by
    that id. Readings stored while it stood keep the reason they were stored with."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"DELETE FROM calibration_periods WHERE id = $1 AND vehicle_id = $2 "
            f"RETURNING {_COLUMNS}",
            period_id,
            vehicle_id,
        )
        if row is None:
            raise NotFoundError(f"vehicle {vehicle_id!r} has no calibration period {period_id}")
        await audit.record(
            conn,
            by,
            action="calibration_period.delete",
            entity="calibration_period",
            entity_id=period_id,
            before=row,
            after=None,
        )


async def list_periods(
    pool: asyncpg.Pool,
    vehicle_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """``vehicle_id``'s registered periods overlapping ``[since, until)`` (a None bound is
    open), newest first, at most ``limit``."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM calibration_periods WHERE vehicle_id = $1"
        " AND ($2::timestamptz IS NULL OR ends_at > $2)"
        " AND ($3::timestamptz IS NULL OR starts_at < $3)"
        " ORDER BY starts_at DESC, id DESC LIMIT $4",
        vehicle_id,
        since,
        until,
        limit,
    )
    return [dict(r) for r in rows]


async def overlapping_periods(
    conn: asyncpg.Pool | asyncpg.Connection,
    vehicle_ids: Iterable[str] | None,
    *,
    since_us: int,
    until_us: int,
) -> list[dict[str, Any]]:
    """The registered periods of ``vehicle_ids`` (None: every vehicle's) that overlap
    ``[since_us, until_us)`` (epoch microseconds), each with ``vehicle_id``, ``pollutant``
    (None: all), ``kind``, ``starts_us`` and ``ends_us``: the rows
    ``CalibrationPeriods.from_rows`` takes."""
    rows = await conn.fetch(
        "SELECT vehicle_id, pollutant, kind,"
        " (extract(epoch FROM starts_at) * 1e6)::bigint AS starts_us,"
        " (extract(epoch FROM ends_at) * 1e6)::bigint AS ends_us"
        " FROM calibration_periods WHERE ($1::text[] IS NULL OR vehicle_id = ANY($1::text[]))"
        " AND starts_at < TIMESTAMPTZ 'epoch' + $3 * INTERVAL '1 microsecond'"
        " AND ends_at > TIMESTAMPTZ 'epoch' + $2 * INTERVAL '1 microsecond'"
        " ORDER BY vehicle_id, starts_at",
        None if vehicle_ids is None else sorted(set(vehicle_ids)),
        since_us,
        until_us,
    )
    return [dict(r) for r in rows]
