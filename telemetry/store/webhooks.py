"""Tables ``webhooks`` and ``webhook_deliveries`` (migrations/0015_webhooks.sql).

Targets are made and removed by admins, audited in the same transaction (the secret never
enters the audit log). Deliveries are written by a trigger on ``alert_events``; the dispatcher
of every API process claims due ones with ``FOR UPDATE SKIP LOCKED``, so two processes never
send the same attempt, and records each attempt's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from telemetry.errors import NotFoundError
from telemetry.store import audit
from telemetry.store.audit import Actor

__all__ = [
    "EVENT_COLUMNS",
    "claim_due",
    "delete_webhook",
    "get_webhook",
    "insert_webhook",
    "list_deliveries",
    "list_webhooks",
    "record_attempt",
]

_TARGET = """
    w.id, w.url, w.description, w.kinds, w.severities, w.event_types, w.created_at,
    w.created_by, w.consecutive_failures, w.last_success_at, w.last_failure_at, w.last_error,
    (SELECT count(*) FROM webhook_deliveries AS d
     WHERE d.webhook_id = w.id AND d.status = 'pending') AS pending,
    (SELECT count(*) FROM webhook_deliveries AS d
     WHERE d.webhook_id = w.id AND d.status = 'failed') AS failed
"""
#: What the audit log keeps of a target (not its secret).
_AUDITED = ("id", "url", "description", "kinds", "severities", "event_types")


async def insert_webhook(
    pool: asyncpg.Pool,
    actor: Actor,
    *,
    url: str,
    secret: str,
    description: str | None,
    kinds: Sequence[str] | None,
    severities: Sequence[str] | None,
    event_types: Sequence[str] | None,
) -> dict[str, Any]:
    """Add a target (audited); the target without its secret."""
    async with pool.acquire() as conn, conn.transaction():
        webhook_id = await conn.fetchval(
            "INSERT INTO webhooks (url, secret, description, kinds, severities, event_types,"
            " created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            url,
            secret,
            description,
            _array(kinds),
            _array(severities),
            _array(event_types),
            actor.name,
        )
        row = await _fetch(conn, webhook_id)
        assert row is not None
        await audit.record(
            conn,
            actor,
            action="webhook.create",
            entity="webhook",
            entity_id=webhook_id,
            before=None,
            after={k: row[k] for k in _AUDITED},
        )
    return row


async def list_webhooks(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every target by id, with its failure record and counts of pending and failed
    deliveries."""
    rows = await pool.fetch(f"SELECT {_TARGET} FROM webhooks AS w ORDER BY w.id")
    return [dict(r) for r in rows]


async def get_webhook(pool: asyncpg.Pool, webhook_id: int) -> dict[str, Any]:
    """One target, or :class:`NotFoundError`."""
    async with pool.acquire() as conn:
        row = await _fetch(conn, webhook_id)
    if row is None:
        raise NotFoundError(f"webhook {webhook_id} does not exist")
    return row


async def delete_webhook(pool: asyncpg.Pool, actor: Actor, webhook_id: int) -> None:
    """Remove a target and its deliveries (audited), or :class:`NotFoundError`."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "DELETE FROM webhooks WHERE id = $1"
            " RETURNING id, url, description, kinds, severities, event_types",
            webhook_id,
        )
        if row is None:
            raise NotFoundError(f"webhook {webhook_id} does not exist")
        await audit.record(
            conn,
            actor,
            action="webhook.delete",
            entity="webhook",
            entity_id=webhook_id,
            before=dict(row),
            after=None,
        )


async def _fetch(conn: asyncpg.Connection, webhook_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {_TARGET} FROM webhooks AS w WHERE w.id = $1", webhook_id)
    return None if row is None else dict(row)


def _array(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else sorted(set(values))


_DELIVERIES = """
    SELECT d.id, d.webhook_id, d.event_id, d.status, d.attempts, d.created_at,
           d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at,
           e.alert_id, e.type
    FROM webhook_deliveries AS d
    LEFT JOIN alert_events AS e ON e.id = d.event_id
    WHERE d.webhook_id = $1
      AND ($2::text IS NULL OR d.status = $2)
      AND ($3::bigint IS NULL OR d.id < $3)
    ORDER BY d.id DESC
    LIMIT $4
"""


async def list_deliveries(
    pool: asyncpg.Pool,
    webhook_id: int,
    *,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """A target's deliveries newest first, or :class:`NotFoundError` for an unknown target;
    ``before_id`` continues after the last id of the previous page."""
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM webhooks WHERE id = $1", webhook_id) is None:
            raise NotFoundError(f"webhook {webhook_id} does not exist")
        rows = await conn.fetch(_DELIVERIES, webhook_id, status, before_id, limit)
    return [dict(r) for r in rows]


# A claim moves next_attempt_at past the longest an attempt may take (the lease): the row is
# no longer due for other processes, and becomes due again if this one dies before recording.
_CLAIM = """
    WITH due AS (
        SELECT id FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries AS d
    SET attempts = d.attempts + 1,
        last_attempt_at = now(),
        next_attempt_at = now() + make_interval(secs => $2)
    FROM due, webhooks AS w, alert_events AS e
    WHERE d.id = due.id AND w.id = d.webhook_id AND e.id = d.event_id
    RETURNING d.id AS delivery_id, d.webhook_id, d.attempts,
              extract(epoch FROM now() - d.created_at)::float8 AS age_s,
              w.url, w.secret,
              e.id, e.alert_id, e.type, e.at, e.kind, e.pollutant, e.rule, e.severity,
              e.status, e.segment_id
"""

#: The event's columns of a claimed row, in the order of the body.
EVENT_COLUMNS = (
    "id",
    "alert_id",
    "type",
    "at",
    "kind",
    "pollutant",
    "rule",
    "severity",
    "status",
    "segment_id",
)


async def claim_due(pool: asyncpg.Pool, *, limit: int, lease_s: float) -> list[dict[str, Any]]:
    """Up to ``limit`` due deliveries, each with its target's URL and secret and its event;
    counted as attempted, and not due again for ``lease_s`` unless recorded before."""
    rows = await pool.fetch(_CLAIM, limit, float(lease_s))
    return [dict(r) for r in rows]


async def record_attempt(
    pool: asyncpg.Pool,
    *,
    delivery_id: int,
    webhook_id: int,
    status: str,
    http_status: int | None,
    error: str | None,
    retry_in_s: float | None,
) -> None:
    """Record an attempt's result: ``status`` ``'delivered'``, ``'failed'`` (given up), or
    ``'pending'`` with the retry due in ``retry_in_s`` (by the database's clock, which the
    claims read too); and the target's failure record (a success resets its run of
    failures)."""
    ok = status == "delivered"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE webhook_deliveries SET status = $2, last_status = $3, last_error = $4,"
            " next_attempt_at = coalesce(now() + make_interval(secs => $5), next_attempt_at),"
            " delivered_at = CASE WHEN $6 THEN now() END"
            " WHERE id = $1",
            delivery_id,
            status,
            http_status,
            error,
            retry_in_s,
            ok,
        )
        await conn.execute(
            "UPDATE webhooks SET"
            " consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END,"
            " last_success_at = CASE WHEN $2 THEN now() ELSE last_success_at END,"
            " last_failure_at = CASE WHEN $2 THEN last_failure_at ELSE now() END,"
            " last_error = CASE WHEN $2 THEN last_error ELSE $3 END"
            " WHERE id = $1",
            webhook_id,
            ok,
            error,
        )
