"""The audit log: who changed what, when, and the entity before and after.

Every change made over the API or the command line (alert and incident transitions, limits,
gates, tiers, thresholds, accounts) calls :func:`record` on the connection of the transaction
that makes the change, so that the change and its audit row commit or roll back together.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["Actor", "jsonable", "list_changes", "record"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: an account (``account_id``), or the command line (``account_id``
    None, ``name`` ``cli:<os user>``)."""

    account_id: int | None
    name: str


def _value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a NaN bound or value means "none" in these tables
    if isinstance(value, Mapping):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    return value


def jsonable(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``row`` as JSON-ready values (times as ISO 8601 text), or None."""
    if row is None:
        return None
    converted: dict[str, Any] = _value(dict(row))
    return converted


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    action: str,
    entity: str,
    entity_id: object,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    """Add one audit row in ``conn``'s transaction (the caller's)."""
    await conn.execute(
        "INSERT INTO audit_log (account_id, account, action, entity, entity_id, before, after) "
        "VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb)",
        actor.account_id,
        actor.name,
        action,
        entity,
        str(entity_id),
        _json(before),
        _json(after),
    )


def _json(row: Mapping[str, Any] | None) -> str | None:
    # Sent as text so that it does not depend on the connection's jsonb codec (the API's pool
    # has one, a command's plain connection does not).
    return None if row is None else json.dumps(jsonable(row), allow_nan=False)


_LIST = """
    SELECT id, at, account, action, entity, entity_id, before::text, after::text
    FROM audit_log
    WHERE ($1::text IS NULL OR account = $1)
      AND ($2::text IS NULL OR entity = $2)
      AND ($3::text IS NULL OR entity_id = $3)
      AND ($4::text IS NULL OR action = $4)
      AND ($5::timestamptz IS NULL OR at >= $5)
      AND ($6::timestamptz IS NULL OR at < $6)
      AND ($7::bigint IS NULL OR id < $7)
    ORDER BY id DESC
    LIMIT $8
"""


async def list_changes(
    pool: asyncpg.Pool,
    *,
    account: str | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> Sequence[dict[str, Any]]:
    """Audit rows newest first (by id), filtered; a NULL filter is off. ``before_id``
    continues after the last row of the previous page."""
    rows = await pool.fetch(
        _LIST, account, entity, entity_id, action, since, until, before_id, limit
    )
    return [
        {
            **dict(r),
            "before": None if r["before"] is None else json.loads(r["before"]),
            "after": None if r["after"] is None else json.loads(r["after"]),
        }
        for r in rows
    ]
