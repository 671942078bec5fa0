"""Table ``analyser_lags``: each vehicle's analyser lag per pollutant (docs/domain.md §5.8),
registered by hand or estimated from recorded drives; and the drive an estimate reads.

Every change is audited (entity ``analyser_lag``, id ``<vehicle>/<pollutant>``) in the
transaction that makes it, so the table holds the current lag and the audit log its history.
Functions take a pool whose connections decode jsonb (``telemetry.db.create_pool``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np

from telemetry.columns import FloatArray, IntArray
from telemetry.errors import ValidationError
from telemetry.store import audit
from telemetry.store.audit import Actor
from telemetry.store.errors import constraint_errors

__all__ = [
    "Drive",
    "delete_lag",
    "list_lags",
    "load_drive",
    "load_lags",
    "set_lag",
    "set_lags",
]

_COLUMNS = (
    "vehicle_id, pollutant, lag_s, method, estimated_from, estimated_to, score, details, "
    "set_by, set_at"
)
_ONE = "vehicle_id = $1 AND pollutant = $2"
# A channel name as the table's CHECK allows it; a column of walkthrough_readings in a query.
_CHANNEL = re.compile(r"[a-z0-9_]{1,32}")


def _key(vehicle_id: str, pollutant: str) -> str:
    return f"{vehicle_id}/{pollutant}"


async def list_lags(pool: asyncpg.Pool, *, vehicle_id: str | None = None) -> list[dict[str, Any]]:
    """Current lags (of one vehicle, or all), by vehicle and pollutant."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM analyser_lags WHERE $1::text IS NULL OR vehicle_id = $1 "
        "ORDER BY vehicle_id, pollutant",
        vehicle_id,
    )
    return [dict(r) for r in rows]


async def load_lags(
    conn: asyncpg.Pool | asyncpg.Connection, vehicle_ids: Iterable[str] | None
) -> dict[str, dict[str, float]]:
    """Per vehicle of ``vehicle_ids`` (None: every vehicle) with lags, pollutant → lag in
    seconds (a pollutant or vehicle without a row has no lag)."""
    rows = await conn.fetch(
        "SELECT vehicle_id, pollutant, lag_s FROM analyser_lags"
        " WHERE $1::text[] IS NULL OR vehicle_id = ANY($1)",
        None if vehicle_ids is None else sorted(set(vehicle_ids)),
    )
    lags: dict[str, dict[str, float]] = {}
    for r in rows:
        lags.setdefault(r["vehicle_id"], {})[r["pollutant"]] = float(r["lag_s"])
    return lags


async def set_lags(
    pool: asyncpg.Pool, vehicle_id: str, lags_s: Mapping[str, float | None], *, by: Actor
) -> None:
    """Register the lags of ``vehicle_id``'s pollutants in ``lags_s`` (None: remove it), all
    in one transaction, each change audited as ``by``'s."""
    async with pool.acquire() as conn, conn.transaction():
        for pollutant, lag_s in sorted(lags_s.items()):
            if lag_s is None:
                await _delete(conn, vehicle_id, pollutant, by)
            else:
                await _set(conn, vehicle_id, pollutant, lag_s, by=by)


async def set_lag(
    pool: asyncpg.Pool,
    vehicle_id: str,
    pollutant: str,
    lag_s: float,
    *,
    by: Actor,
    estimated_from: datetime | None = None,
    estimated_to: datetime | None = None,
    score: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Set the lag of ``vehicle_id``'s ``pollutant`` channel and return its row: registered
    by hand, or, with ``estimated_from`` and ``estimated_to`` (the drives' window), estimated
    (``score``: the correlation's peak; ``details``: how). Audited as ``by``'s change;
    :class:`ValidationError` for a value the table refuses."""
    async with pool.acquire() as conn, conn.transaction():
        return await _set(
            conn,
            vehicle_id,
            pollutant,
            lag_s,
            by=by,
            estimated_from=estimated_from,
            estimated_to=estimated_to,
            score=score,
            details=details,
        )


async def _set(
    conn: asyncpg.Connection,
    vehicle_id: str,
    pollutant: str,
    lag_s: float,
    *,
    by: Actor,
    estimated_from: datetime | None = None,
    estimated_to: datetime | None = None,
    score: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    method = "registered" if estimated_from is None and estimated_to is None else "estimated"
    before = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM analyser_lags WHERE {_ONE} FOR UPDATE",
        vehicle_id,
        pollutant,
    )
    with constraint_errors():
        after = await conn.fetchrow(
            "INSERT INTO analyser_lags (vehicle_id, pollutant, lag_s, method, estimated_from,"
            " estimated_to, score, details, set_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (vehicle_id, pollutant) DO UPDATE SET lag_s = EXCLUDED.lag_s,"
            " method = EXCLUDED.method, estimated_from = EXCLUDED.estimated_from,"
            " estimated_to = EXCLUDED.estimated_to, score = EXCLUDED.score,"
            " details = EXCLUDED.details, set_by = EXCLUDED.set_by, set_at = now()"
            f" RETURNING {_COLUMNS}",
            vehicle_id,
            pollutant,
            float(lag_s),
            method,
            estimated_from,
            estimated_to,
            score,
            None if details is None else dict(details),
            by.name,
        )
    assert after is not None
    await audit.record(
        conn,
        by,
        action="analyser_lag.set",
        entity="analyser_lag",
        entity_id=_key(vehicle_id, pollutant),
        before=before,
        after=after,
    )
    return dict(after)


async def delete_lag(pool: asyncpg.Pool, vehicle_id: str, pollutant: str, *, by: Actor) -> bool:
    """Remove the lag of ``vehicle_id``'s ``pollutant`` channel (no lag from then on);
    False if it had none. Audited as ``by``'s change."""
    async with pool.acquire() as conn, conn.transaction():
        return await _delete(conn, vehicle_id, pollutant, by)


async def _delete(conn: asyncpg.Connection, vehicle_id: str, pollutant: str, by: Actor) -> bool:
    before = await conn.fetchrow(
        f"DELETE FROM analyser_lags WHERE {_ONE} RETURNING {_COLUMNS}",
        vehicle_id,
        pollutant,
    )
    if before is None:
        return False
    await audit.record(
        conn,
        by,
        action="analyser_lag.delete",
        entity="analyser_lag",
        entity_id=_key(vehicle_id, pollutant),
        before=before,
        after=None,
    )
    return True


@dataclass(frozen=True, slots=True)
class Drive:
    """One vehicle's stored walk-through readings in time order: times (epoch µs), positions
    and one pollutant's values (NaN where absent, flagged other than ``N`` or excluded)."""

    ts_us: IntArray
    lat: FloatArray
    lon: FloatArray
    values: FloatArray


async def load_drive(
    pool: asyncpg.Pool,
    vehicle_id: str,
    pollutant: str,
    *,
    since: datetime,
    until: datetime,
    pollutants: Collection[str],
    max_readings: int = 100_000,
) -> Drive:
    """``vehicle_id``'s readings in ``[since, until)``, at most ``max_readings`` (the oldest),
    with the values of ``pollutant``, one of the walk-through channels ``pollutants``.

    A value whose reading is flagged other than ``N`` or whose channel is excluded (a sensor
    fault or a calibration, ``fault_pollutants``) is NaN; its position still counts as track.
    """
    if pollutant not in pollutants or _CHANNEL.fullmatch(pollutant) is None:
        raise ValidationError(f"unknown pollutant {pollutant!r}")
    try:
        rows = await pool.fetch(
            "SELECT (extract(epoch FROM ts) * 1e6)::bigint AS ts_us, lat, lon,"
            f" CASE WHEN flag = 'N' AND NOT ($4 = ANY(coalesce(fault_pollutants, '{{}}')))"
            f" THEN {pollutant}::float8 END AS value"
            " FROM walkthrough_readings WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3"
            " ORDER BY ts LIMIT $5",
            vehicle_id,
            since,
            until,
            pollutant,
            max_readings,
        )
    except asyncpg.UndefinedColumnError:
        raise ValidationError(f"unknown pollutant {pollutant!r}") from None
    return Drive(
        ts_us=np.array([r["ts_us"] for r in rows], dtype=np.int64),
        lat=np.array([r["lat"] for r in rows], dtype=np.float64),
        lon=np.array([r["lon"] for r in rows], dtype=np.float64),
        values=np.array([np.nan if r["value"] is None else r["value"] for r in rows], np.float64),
    )
