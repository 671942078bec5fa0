"""Table ``thresholds``: limits versioned by effective date (CST calendar dates, end exclusive).

A limit is never edited in place: an operator adds a row that takes effect on a date, and the
open-ended row it supersedes is closed on that date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from telemetry.detect.thresholds import ThresholdTable
from telemetry.errors import ValidationError
from telemetry.store.errors import constraint_errors
from telemetry.store.versions import check_range, superseded_by

__all__ = ["create_threshold", "list_thresholds", "load_thresholds"]

_COLUMNS = (
    "id, kind, pollutant, limit_value, unit, averaging, source, tier, severity, "
    "effective_from, effective_to, confirmed, note, created_at"
)


async def load_thresholds(pool: asyncpg.Pool, kind: str) -> ThresholdTable:
    """Every threshold row of vehicle kind ``kind``, as a :class:`ThresholdTable`."""
    return ThresholdTable.from_rows(await list_thresholds(pool, kind=kind))


async def list_thresholds(pool: asyncpg.Pool, *, kind: str | None = None) -> list[dict[str, Any]]:
    """Threshold rows (of one kind, or all), by kind, pollutant, tier and effective date."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM thresholds WHERE $1::text IS NULL OR kind = $1 "
        "ORDER BY kind, pollutant, tier, effective_from",
        kind,
    )
    return [dict(r) for r in rows]


async def create_threshold(
    pool: asyncpg.Pool,
    *,
    kind: str,
    pollutant: str,
    limit_value: float,
    unit: str,
    averaging: str,
    source: str,
    tier: str = "limit",
    severity: str = "warning",
    effective_from: dt.date,
    effective_to: dt.date | None = None,
    confirmed: bool = True,
    note: str | None = None,
) -> dict[str, Any]:
    """Add a threshold row effective over [effective_from, effective_to) and return it.

    If the new row starts inside an open-ended row of the same kind, pollutant and tier, that
    row is closed at ``effective_from`` in the same transaction. Note that a new row with an
    ``effective_to`` then leaves no limit after that date until another row is added.

    Raises :class:`ValidationError` for a non-positive limit or an empty date range, and
    :class:`ConflictError` when the range overlaps any other row of the same key.
    """
    if not limit_value > 0:
        raise ValidationError(f"limit_value must be positive, got {limit_value}")
    check_range(effective_from, effective_to)
    async with pool.acquire() as conn, conn.transaction():
        # Serialize changes to one (kind, pollutant, tier): the overlap check below reads rows
        # that a concurrent insert could otherwise invalidate.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 0))",
            kind,
            pollutant,
            tier,
        )
        existing = await conn.fetch(
            "SELECT id, effective_from, effective_to FROM thresholds "
            "WHERE kind = $1 AND pollutant = $2 AND tier = $3 ORDER BY effective_from",
            kind,
            pollutant,
            tier,
        )
        superseded = superseded_by(
            existing,
            effective_from,
            effective_to,
            key=f"{kind}/{pollutant}/{tier}",
            noun="threshold",
        )
        if superseded is not None:
            await conn.execute(
                "UPDATE thresholds SET effective_to = $2 WHERE id = $1", superseded, effective_from
            )
        with constraint_errors():
            created = await conn.fetchrow(
                "INSERT INTO thresholds (kind, pollutant, limit_value, unit, averaging, source, "
                "tier, severity, effective_from, effective_to, confirmed, note) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                f"RETURNING {_COLUMNS}",
                kind,
                pollutant,
                float(limit_value),
                unit,
                averaging,
                source,
                tier,
                severity,
                effective_from,
                effective_to,
                confirmed,
                note,
            )
    assert created is not None
    return dict(created)
