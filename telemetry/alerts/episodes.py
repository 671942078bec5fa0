"""Alert episodes: exceedances merged into at most one unresolved alert per key.

The key is (kind, subject, pollutant, rule). The partial unique index
``alerts_one_open_episode`` makes the database, not the workers, decide whether an exceedance
opens an episode or joins the open (or acknowledged) one, so concurrent workers cannot create
twins. Once resolved, the next exceedance opens a new episode. All times are measurement
times, never arrival times.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from telemetry.alerts.exceedance import Exceedance

__all__ = ["SEVERITIES", "auto_resolve", "record_exceedances"]

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
)


def _latest(new: str, old: str) -> str:
    """The column keeps the value of whichever side was measured last."""
    return (
        f"{new} = CASE WHEN EXCLUDED.last_seen >= alerts.last_seen "
        f"THEN EXCLUDED.{new} ELSE alerts.{old} END"
    )


# Rows are inserted in key order so that two batches touching the same keys lock them in the
# same order and cannot deadlock.
_UPSERT = f"""
INSERT INTO alerts ({", ".join(name for name, _ in _COLUMNS)})
SELECT x.kind, x.subject, x.segment_id, x.pollutant, x.rule, x.severity, x.threshold_id,
       x.limit_value, x.unit, x.averaging, x.source, x.first_seen, x.last_seen, x.occurrences,
       x.last_value, x.peak_value, x.peak_multiple,
       ARRAY(SELECT jsonb_array_elements_text(x.vehicles::jsonb)), x.details::jsonb
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
RETURNING (xmax = 0) AS inserted
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
                max(e.multiple for e in group),
                json.dumps(sorted({e.vehicle_id for e in group})),
                json.dumps(latest.details, default=_json_default),
            )
        )
    return rows


async def record_exceedances(conn: asyncpg.Connection, exceedances: Sequence[Exceedance]) -> int:
    """Merge exceedances into alert episodes in one statement; return how many episodes opened.

    Runs on the caller's connection, inside the caller's transaction (the ingest batch's), so
    the episodes commit or roll back with the readings they come from. Per key, an episode
    gains the occurrences, widens [first_seen, last_seen], keeps ``last_value`` (and the
    limit, source and details) of the latest measurement, the highest pass value and
    multiple as ``peak_value`` / ``peak_multiple``, the union of vehicles and the worst
    severity. An acknowledged episode keeps absorbing repeats; a resolved one is left alone
    and a new episode opens.
    """
    if not exceedances:
        return 0
    rows = _episodes(exceedances)
    columns = [list(column) for column in zip(*rows, strict=True)]
    result = await conn.fetch(_UPSERT, *columns, list(SEVERITIES))
    return sum(1 for r in result if r["inserted"])


async def auto_resolve(
    conn_or_pool: asyncpg.Connection | asyncpg.Pool, *, quiet_period_s: float, now: dt.datetime
) -> int:
    """Resolve every open or acknowledged episode without an exceedance measured in the last
    ``quiet_period_s`` before ``now`` (timezone-aware); return how many were resolved."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cutoff = now - dt.timedelta(seconds=quiet_period_s)
    note = f"auto-resolved: no exceedance measured for {quiet_period_s:g} s"
    status = await conn_or_pool.execute(
        "UPDATE alerts SET status = 'resolved', resolved_by = 'system', resolved_at = $1, "
        "resolve_note = $3, updated_at = now() "
        "WHERE status <> 'resolved' AND last_seen < $2",
        now,
        cutoff,
        note,
    )
    return int(status.split()[-1])
