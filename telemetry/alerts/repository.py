"""Reading alert episodes and moving them through open → acknowledged → resolved.

Episodes are created and extended by :mod:`telemetry.alerts.episodes`; this module is the
officers' side. Each transition is one conditional ``UPDATE … RETURNING``, so when two
officers act on the same alert at once exactly one of them wins and the other gets a
:class:`~telemetry.errors.ConflictError`. The transition and its audit row (who, before and
after) commit in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from telemetry.errors import ConflictError, NotFoundError, ValidationError
from telemetry.store import audit
from telemetry.store.audit import Actor

__all__ = [
    "ALERT_STATUSES",
    "acknowledge_alert",
    "get_alert",
    "last_alert_event_id",
    "list_alert_events",
    "list_alerts",
    "resolve_alert",
    "severity_rank",
]

ALERT_STATUSES: tuple[str, ...] = ("open", "acknowledged", "resolved")

_COLUMNS = """
    id, kind, subject, segment_id, pollutant, rule, severity, status, threshold_id,
    limit_value, unit, averaging, source, first_seen, last_seen, occurrences, last_value,
    peak_value, peak_multiple, vehicles, details, created_at, updated_at,
    acknowledged_by, acknowledged_at, ack_note, resolved_by, resolved_at, resolve_note,
    peak_ratio, rules, segments, confidence, confirmed_at, stale_since, resolution, verification,
    (SELECT r.name FROM road_segments AS r
     WHERE r.name IS NOT NULL
       AND (r.id = alerts.segment_id OR r.id = ANY(alerts.segments))
     ORDER BY r.id = alerts.segment_id DESC, array_position(alerts.segments, r.id)
     LIMIT 1) AS street,
    (SELECT jsonb_build_object(
         'lon', ((r.coords -> ((jsonb_array_length(r.coords) - 1) / 2) ->> 0)::float8
                 + (r.coords -> (jsonb_array_length(r.coords) / 2) ->> 0)::float8) / 2,
         'lat', ((r.coords -> ((jsonb_array_length(r.coords) - 1) / 2) ->> 1)::float8
                 + (r.coords -> (jsonb_array_length(r.coords) / 2) ->> 1)::float8) / 2)
     FROM road_segments AS r
     WHERE r.id = coalesce(alerts.segment_id, alerts.segments[1])) AS point
"""

#: The rank of a severity, least severe first (unknown severities rank 0).
_RANK = "coalesce(array_position(ARRAY['info', 'warning', 'critical'], severity), 0)"

# Every filter is optional: a NULL parameter switches its condition off.
_LIST = f"""
    SELECT {_COLUMNS}
    FROM alerts
    WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
      AND ($2::text IS NULL OR kind = $2)
      AND ($3::text IS NULL OR pollutant = $3)
      AND ($4::text IS NULL OR vehicles @> ARRAY[$4::text])
      AND ($5::bigint IS NULL OR segment_id = $5 OR segments @> ARRAY[$5::bigint])
      AND ($6::timestamptz IS NULL OR last_seen >= $6)
      AND ($7::timestamptz IS NULL OR first_seen < $7)
      AND ($10::text IS NULL OR confidence = $10)
      AND ($11::boolean IS NULL OR (stale_since IS NOT NULL) = $11)
      AND ($12::text IS NULL OR resolution = $12)
      AND ($13::text IS NULL OR rule = $13 OR rules @> ARRAY[$13::text])
      AND ($14::text[] IS NULL OR severity = ANY($14::text[]))
      AND (NOT $15::boolean OR $16::integer IS NULL
           OR {_RANK} < $16 OR ({_RANK} = $16 AND id < $8))
      AND ($15::boolean OR $8::bigint IS NULL OR id < $8)
    ORDER BY CASE WHEN $15 THEN {_RANK} ELSE 0 END DESC, id DESC
    LIMIT $9
"""


async def list_alerts(
    pool: asyncpg.Pool,
    *,
    statuses: Sequence[str] | None = None,
    kind: str | None = None,
    pollutant: str | None = None,
    vehicle_id: str | None = None,
    segment_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
    confidence: str | None = None,
    stale: bool | None = None,
    resolution: str | None = None,
    rule: str | None = None,
    severities: Sequence[str] | None = None,
    by_severity: bool = False,
    before_rank: int | None = None,
) -> list[dict[str, Any]]:
    """Alerts newest first (by id), at most ``limit`` of them; with ``by_severity`` most
    severe first (then newest), continuing after (``before_rank``, ``before_id``).

    Each row carries ``street`` (the imported road name of the alert's segment, else of the
    first named segment of its stretch; None when unnamed) and ``point`` (``{lon, lat}``, the
    middle of the alert's segment geometry; None without a known segment). ``rule`` matches
    the alert's rule or any rule in its ``rules``.

    ``segment_id`` matches an alert whose stretch contains that segment; ``confidence``
    (``'suspected'`` / ``'confirmed'``), ``stale`` and ``resolution`` (``'verified'``,
    ``'officer'``, ``'quiet'``) filter on those fields.

    ``since``/``until`` select episodes overlapping that window of measurement time
    (``last_seen >= since`` and ``first_seen < until``); ``before_id`` continues a listing
    after the last id of the previous page.
    """
    rows = await pool.fetch(
        _LIST,
        list(statuses) if statuses else None,
        kind,
        pollutant,
        vehicle_id,
        segment_id,
        since,
        until,
        before_id,
        limit,
        confidence,
        stale,
        resolution,
        rule,
        list(severities) if severities else None,
        by_severity,
        before_rank,
    )
    return [dict(r) for r in rows]


def severity_rank(severity: str) -> int:
    """The rank ``by_severity`` orders on: 1 info, 2 warning, 3 critical, 0 anything else."""
    ranks = ("info", "warning", "critical")
    return ranks.index(severity) + 1 if severity in ranks else 0


async def get_alert(pool: asyncpg.Pool, alert_id: int) -> dict[str, Any]:
    """One alert, or :class:`NotFoundError`."""
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM alerts WHERE id = $1", alert_id)
    if row is None:
        raise NotFoundError(f"alert {alert_id} does not exist")
    return dict(row)


_ACKNOWLEDGE = f"""
    UPDATE alerts
    SET status = 'acknowledged', acknowledged_by = $2, acknowledged_at = now(), ack_note = $3
    WHERE id = $1 AND status = 'open'
    RETURNING {_COLUMNS}
"""

_RESOLVE = f"""
    UPDATE alerts
    SET status = 'resolved', resolved_by = $2, resolved_at = now(), resolve_note = $3,
        resolution = 'officer'
    WHERE id = $1 AND status <> 'resolved'
    RETURNING {_COLUMNS}
"""


#: What the audit log keeps of an alert before and after a transition.
_AUDITED = (
    "status",
    "acknowledged_by",
    "acknowledged_at",
    "ack_note",
    "resolved_by",
    "resolved_at",
    "resolve_note",
    "resolution",
)


async def acknowledge_alert(
    pool: asyncpg.Pool, alert_id: int, *, by: Actor, note: str | None = None
) -> dict[str, Any]:
    """Mark an open alert acknowledged by ``by`` (its name is stored); the updated alert.

    :class:`NotFoundError` if it does not exist, :class:`ConflictError` if it is not open.
    """
    return await _transition(pool, _ACKNOWLEDGE, alert_id, by, note, "acknowledge")


async def resolve_alert(
    pool: asyncpg.Pool, alert_id: int, *, by: Actor, note: str | None = None
) -> dict[str, Any]:
    """Mark an open or acknowledged alert resolved by ``by`` (its name is stored); the
    updated alert.

    :class:`NotFoundError` if it does not exist, :class:`ConflictError` if already resolved,
    :class:`ValidationError` for a high-emitter alert without a note (it otherwise stays open
    until a later clean pass of the plate, docs/adr/0009).
    """
    return await _transition(pool, _RESOLVE, alert_id, by, note, "resolve")


#: Kinds an officer may resolve only with a note saying why.
NOTE_REQUIRED_KINDS: frozenset[str] = frozenset({"remote_sensing"})


async def _transition(
    pool: asyncpg.Pool, sql: str, alert_id: int, by: Actor, note: str | None, verb: str
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow(
            f"SELECT kind, {', '.join(_AUDITED)} FROM alerts WHERE id = $1 FOR UPDATE", alert_id
        )
        if before is None:
            raise NotFoundError(f"alert {alert_id} does not exist")
        if verb == "resolve" and before["kind"] in NOTE_REQUIRED_KINDS and not (note or "").strip():
            raise ValidationError(f"alert {alert_id} is a {before['kind']} alert: give a note")
        row = await conn.fetchrow(sql, alert_id, by.name, note)
        if row is None:
            raise ConflictError(f"cannot {verb} alert {alert_id}: it is {before['status']}")
        await audit.record(
            conn,
            by,
            action=f"alert.{verb}",
            entity="alert",
            entity_id=alert_id,
            before={k: before[k] for k in _AUDITED},
            after={k: row[k] for k in _AUDITED},
        )
        return dict(row)


_EVENTS = """
    SELECT id, alert_id, type, at, kind, pollutant, rule, severity, status, segment_id
    FROM alert_events
    WHERE id > $1
    ORDER BY id
    LIMIT $2
"""


async def list_alert_events(
    pool: asyncpg.Pool, *, after_id: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """Alert state transitions (``opened``, ``escalated``, ``acknowledged``, ``confirmed``,
    ``stale``, ``resolved``) with ids above ``after_id``, oldest first.

    The ``alert_events`` triggers (migration 0013) write them in the transition's transaction
    and make them visible in id order, so reading on from the last id seen misses none."""
    rows = await pool.fetch(_EVENTS, after_id, limit)
    return [dict(r) for r in rows]


async def last_alert_event_id(pool: asyncpg.Pool) -> int:
    """The id of the latest alert event, 0 when there is none."""
    return int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM alert_events"))
