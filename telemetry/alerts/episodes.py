"""Alert episodes: exceedances merged into at most one unresolved alert per key.

The key is (kind, subject, pollutant, rule); a walk-through subject is a road, so one plume
over several segments is one alert (docs/adr/0009). The partial unique index
``alerts_one_open_episode`` makes the database, not the workers, decide whether an exceedance
opens an episode or joins the open (or acknowledged) one, so concurrent workers cannot create
twins. Once resolved, the next exceedance opens a new episode. All times are measurement
times, never arrival times.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from telemetry.alerts.exceedance import Exceedance

__all__ = [
    "DRIVE_GAP_S",
    "QUIET_KINDS",
    "SEVERITIES",
    "STALE_KINDS",
    "auto_resolve",
    "mark_stale",
    "record_exceedances",
    "sweep_alerts",
]

#: Severities from least to most severe; an episode keeps the worst it has seen.
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_COLUMNS = (
    ("kind", "text"),
    ("subject", "text"),
    ("segment_id", "bigint"),
    ("pollutant", "text"),
    ("rule", "text"),
    ("severity", "text"),
    ("threshold_id", "integer"),
    ("limit_value", "float8"),
    ("unit", "text"),
    ("averaging", "text"),
    ("source", "text"),
    ("first_seen", "timestamptz"),
    ("last_seen", "timestamptz"),
    ("occurrences", "integer"),
    ("last_value", "float8"),
    ("peak_value", "float8"),
    ("peak_multiple", "float8"),
    ("vehicles", "text"),  # a JSON array, since unnest cannot take ragged arrays
    ("details", "text"),  # JSON
    ("peak_ratio", "float8"),
    ("rules", "text"),  # a JSON array
    ("segments", "text"),  # a JSON array
    ("confidence", "text"),
)


def _latest(new: str, old: str) -> str:
    """The column keeps the value of whichever side was measured last."""
    return (
        f"{new} = CASE WHEN EXCLUDED.last_seen >= alerts.last_seen "
        f"THEN EXCLUDED.{new} ELSE alerts.{old} END"
    )


#: Seconds between two passes of one vehicle for them to count as different drives, unless an
#: exceedance's details say otherwise (``drive_gap_s``).
DRIVE_GAP_S = 900.0

# A repeat drive confirms a suspected episode: another vehicle, or the same one at least the
# drive gap before or after what the episode has seen (measurement times, so late data counts
# by when it was measured).
_GAP = f"make_interval(secs => coalesce((EXCLUDED.details->>'drive_gap_s')::float8, {DRIVE_GAP_S}))"
_CONFIRMS = f"""(EXCLUDED.confidence = 'confirmed'
        OR NOT (EXCLUDED.vehicles <@ alerts.vehicles)
        OR EXCLUDED.first_seen > alerts.last_seen + {_GAP}
        OR EXCLUDED.last_seen < alerts.first_seen - {_GAP})"""

# Rows are inserted in key order so that two batches touching the same keys lock them in the
# same order and cannot deadlock.
_UPSERT = f"""
INSERT INTO alerts ({", ".join(name for name, _ in _COLUMNS)}, confirmed_at)
SELECT x.kind, x.subject, x.segment_id, x.pollutant, x.rule, x.severity, x.threshold_id,
       x.limit_value, x.unit, x.averaging, x.source, x.first_seen, x.last_seen, x.occurrences,
       x.last_value, x.peak_value, x.peak_multiple,
       ARRAY(SELECT jsonb_array_elements_text(x.vehicles::jsonb)), x.details::jsonb,
       x.peak_ratio, ARRAY(SELECT jsonb_array_elements_text(x.rules::jsonb)),
       ARRAY(SELECT jsonb_array_elements_text(x.segments::jsonb)::bigint), x.confidence,
       CASE WHEN x.confidence = 'confirmed' THEN now() END
FROM unnest({", ".join(f"${i}::{type_}[]" for i, (_, type_) in enumerate(_COLUMNS, 1))})
     AS x({", ".join(name for name, _ in _COLUMNS)})
ORDER BY x.kind, x.subject, x.pollutant, x.rule
ON CONFLICT (kind, subject, pollutant, rule) WHERE status <> 'resolved' DO UPDATE SET
    occurrences = alerts.occurrences + EXCLUDED.occurrences,
    first_seen = LEAST(alerts.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(alerts.last_seen, EXCLUDED.last_seen),
    {_latest("last_value", "last_value")},
    peak_value = GREATEST(alerts.peak_value, EXCLUDED.peak_value),
    peak_multiple = GREATEST(alerts.peak_multiple, EXCLUDED.peak_multiple),
    peak_ratio = GREATEST(alerts.peak_ratio, EXCLUDED.peak_ratio),
    rules = ARRAY(SELECT DISTINCT r FROM unnest(alerts.rules || EXCLUDED.rules) AS r ORDER BY r),
    segments = ARRAY(
        SELECT DISTINCT g FROM unnest(alerts.segments || EXCLUDED.segments) AS g ORDER BY g
    ),
    confidence = CASE WHEN {_CONFIRMS} THEN 'confirmed' ELSE alerts.confidence END,
    confirmed_at = CASE WHEN alerts.confidence <> 'confirmed' AND {_CONFIRMS} THEN now()
                        ELSE alerts.confirmed_at END,
    stale_since = NULL,
    verification = CASE WHEN EXCLUDED.last_seen >= alerts.last_seen THEN '{{}}'::jsonb
                        ELSE alerts.verification END,
    vehicles = ARRAY(
        SELECT DISTINCT v FROM unnest(alerts.vehicles || EXCLUDED.vehicles) AS v ORDER BY v
    ),
    severity = CASE
        WHEN coalesce(array_position(${len(_COLUMNS) + 1}::text[], EXCLUDED.severity), 0)
           > coalesce(array_position(${len(_COLUMNS) + 1}::text[], alerts.severity), 0)
        THEN EXCLUDED.severity ELSE alerts.severity END,
    {_latest("segment_id", "segment_id")},
    {_latest("threshold_id", "threshold_id")},
    {_latest("limit_value", "limit_value")},
    {_latest("unit", "unit")},
    {_latest("averaging", "averaging")},
    {_latest("source", "source")},
    details = CASE WHEN EXCLUDED.last_seen >= alerts.last_seen
                   THEN alerts.details || EXCLUDED.details ELSE alerts.details END,
    updated_at = now()
RETURNING id, (xmax = 0) AS inserted
"""


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) + 1 if severity in SEVERITIES else 0


def _timestamp(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _episodes(exceedances: Sequence[Exceedance]) -> list[tuple[Any, ...]]:
    """One row per key: the exceedances of one batch merged the way the upsert merges them."""
    groups: dict[tuple[str, str, str, str], list[Exceedance]] = {}
    for e in exceedances:
        groups.setdefault((e.kind, e.subject, e.pollutant, e.rule), []).append(e)
    rows = []
    for group in groups.values():
        latest = max(group, key=lambda e: e.last_us)
        worst = max(group, key=lambda e: _severity_rank(e.severity))
        rows.append(
            (
                latest.kind,
                latest.subject,
                latest.segment_id,
                latest.pollutant,
                latest.rule,
                worst.severity,
                latest.threshold_id,
                latest.limit_value,
                latest.unit,
                latest.averaging,
                latest.source,
                _timestamp(min(e.first_us for e in group)),
                _timestamp(latest.last_us),
                len(group),
                latest.value,
                max(e.value for e in group),
                max((e.multiple for e in group if e.multiple is not None), default=None),
                json.dumps(sorted({e.vehicle_id for e in group})),
                json.dumps(latest.details, default=_json_default),
                max(e.share for e in group),
                json.dumps(sorted({r for e in group for r in (e.rules or (e.rule,))})),
                json.dumps(sorted({s for e in group for s in e.segments})),
                _confidence(group),
            )
        )
    return rows


def _confidence(group: list[Exceedance]) -> str:
    """'confirmed' if any exceedance is, or the group holds two drives (two vehicles, or one
    vehicle's passes at least the drive gap apart)."""
    if any(e.confidence == "confirmed" for e in group):
        return "confirmed"
    if len({e.vehicle_id for e in group}) > 1:
        return "confirmed"
    ordered = sorted(group, key=lambda e: e.first_us)
    for before, after in itertools.pairwise(ordered):
        gap_s = float(after.details.get("drive_gap_s", DRIVE_GAP_S))
        if after.first_us - before.last_us > gap_s * 1e6:
            return "confirmed"
    return "suspected"


async def record_exceedances(conn: asyncpg.Connection, exceedances: Sequence[Exceedance]) -> int:
    """Merge exceedances into alert episodes in one statement; return how many episodes opened.

    Runs on the caller's connection, inside the caller's transaction (the ingest batch's), so
    the episodes commit or roll back with the readings they come from. Per key, an episode
    gains the occurrences, widens [first_seen, last_seen], keeps ``last_value`` (and the
    limit, source and details) of the latest measurement, the highest pass value, ratio C/S
    and multiple as ``peak_value`` / ``peak_ratio`` / ``peak_multiple`` (a multiple that was
    never reported stays NULL), the union of vehicles, rules and segments (the stretch) and
    the worst severity. A suspected episode becomes confirmed on a repeat drive (another
    vehicle, or the same one more than the drive gap away in measurement time) or a
    confirmed exceedance; any new exceedance clears the stale flag, and one measured later
    than the episode clears the verifying passes recorded so far. An acknowledged episode
    keeps absorbing repeats; a resolved one is left alone and a new episode opens.
    """
    if not exceedances:
        return 0
    rows = _episodes(exceedances)
    columns = [list(column) for column in zip(*rows, strict=True)]
    result = await conn.fetch(_UPSERT, *columns, list(SEVERITIES))
    return sum(1 for r in result if r["inserted"])


#: Kinds whose alerts may still close by silence (a quiet period after ``last_seen``). An
#: emergency reading stream is continuous at a fixed site, so silence there means the
#: concentration fell; walk-through and high-emitter alerts close only by verification or by
#: an officer (docs/adr/0009).
QUIET_KINDS: tuple[str, ...] = ("emergency",)

#: Kinds whose open alerts are marked stale when nobody has re-measured them for a while.
STALE_KINDS: tuple[str, ...] = ("walkthrough",)


async def auto_resolve(
    conn_or_pool: asyncpg.Connection | asyncpg.Pool,
    *,
    quiet_period_s: float,
    now: dt.datetime,
    kinds: Sequence[str] = QUIET_KINDS,
) -> int:
    """Resolve every open or acknowledged episode of ``kinds`` without an exceedance measured
    in the last ``quiet_period_s`` before ``now`` (timezone-aware); return how many were
    resolved. Only :data:`QUIET_KINDS` by default: other alerts never close by silence."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cutoff = now - dt.timedelta(seconds=quiet_period_s)
    note = f"auto-resolved: no exceedance measured for {quiet_period_s:g} s"
    status = await conn_or_pool.execute(
        "UPDATE alerts SET status = 'resolved', resolved_by = 'system', resolved_at = $1, "
        "resolve_note = $3, resolution = 'quiet', updated_at = now() "
        "WHERE status <> 'resolved' AND last_seen < $2 AND kind = ANY($4::text[])",
        now,
        cutoff,
        note,
        list(kinds),
    )
    return int(status.split()[-1])


async def mark_stale(
    conn_or_pool: asyncpg.Connection | asyncpg.Pool,
    *,
    stale_after_s: float,
    now: dt.datetime,
    kinds: Sequence[str] = STALE_KINDS,
) -> int:
    """Mark stale (``stale_since = now``) every unresolved episode of ``kinds`` that nobody has
    measured for ``stale_after_s`` before ``now``: neither a new exceedance (``last_seen``) nor
    a verifying pass. Stale is a flag for the officer, not a resolution; a new pass over the
    stretch clears it. Return how many were marked."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cutoff = now - dt.timedelta(seconds=stale_after_s)
    status = await conn_or_pool.execute(
        "UPDATE alerts SET stale_since = $1, updated_at = now() "
        "WHERE status <> 'resolved' AND stale_since IS NULL AND kind = ANY($3::text[]) "
        "AND GREATEST(last_seen, (verification->>'last_pass_at')::timestamptz) < $2",
        now,
        cutoff,
        list(kinds),
    )
    return int(status.split()[-1])


async def sweep_alerts(
    conn_or_pool: asyncpg.Connection | asyncpg.Pool,
    *,
    quiet_period_s: float,
    stale_after_s: float,
    now: dt.datetime,
) -> tuple[int, int]:
    """The periodic job: :func:`auto_resolve` the quiet kinds, :func:`mark_stale` the others.
    Returns (resolved, marked stale)."""
    resolved = await auto_resolve(conn_or_pool, quiet_period_s=quiet_period_s, now=now)
    stale = await mark_stale(conn_or_pool, stale_after_s=stale_after_s, now=now)
    return resolved, stale
