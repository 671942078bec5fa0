"""Verification (评): an alert closes when later valid passes over its stretch come back clean.

Nothing closes a walk-through alert by silence (docs/adr/0009). A *clean pass* is a closed,
valid drive pass on one of the alert's segments, for the alert's pollutant, in which no rule
fired. It counts when it was measured after the episode's ``last_seen`` (measurement times: a
late upload of an old pass never verifies a newer plume). Passes of one vehicle less than the
drive gap apart are one drive; the alert resolves when ``required`` different drives have come
back clean, and records them with before/after statistics. Any new pass over the stretch
clears the stale flag.

:func:`fold_passes` is the pure rule; :func:`verify_alerts` runs it against the database,
inside the ingest batch's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from telemetry.columns import Columns, FloatArray, IntArray, ObjectArray

__all__ = ["CleanPass", "CleanPasses", "fold_passes", "verify_alerts"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class CleanPass:
    """One valid pass in which no rule fired for ``pollutant``; times in epoch µs UTC."""

    vehicle_id: str
    segment_id: int
    pollutant: str
    first_us: int
    last_us: int
    mean: float
    readings: int


@dataclass(frozen=True, slots=True)
class CleanPasses(Columns):
    """Clean passes as columns, one row per (pass, pollutant): a batch closes thousands of
    passes, and only the few that cross an open alert's stretch become :class:`CleanPass`."""

    vehicle_id: ObjectArray
    segment_id: IntArray
    pollutant: ObjectArray
    first_us: IntArray
    last_us: IntArray
    mean: FloatArray
    readings: IntArray

    def records(self, mask: npt.NDArray[np.bool_]) -> list[CleanPass]:
        """The rows under ``mask`` as records."""
        rows = self.take(mask)
        return [
            CleanPass(str(v), int(seg), str(p), int(a), int(b), float(m), int(n))
            for v, seg, p, a, b, m, n in zip(
                rows.vehicle_id.tolist(),
                rows.segment_id.tolist(),
                rows.pollutant.tolist(),
                rows.first_us.tolist(),
                rows.last_us.tolist(),
                rows.mean.tolist(),
                rows.readings.tolist(),
                strict=True,
            )
        ]


def _iso(us: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=us)).isoformat()


def fold_passes(
    verification: dict[str, Any],
    passes: Sequence[CleanPass],
    *,
    last_seen_us: int,
    drive_gap_s: float,
) -> dict[str, Any]:
    """The alert's ``verification`` after these clean passes (of its pollutant, on its
    stretch). Passes measured at or before ``last_seen_us`` are ignored; a pass already
    recorded (same vehicle and first reading) changes nothing. ``drives`` groups the passes of
    one vehicle less than ``drive_gap_s`` apart."""
    recorded = list(verification.get("passes", []))
    seen = {(p["vehicle_id"], p["first_us"]) for p in recorded}
    for p in passes:
        if p.first_us <= last_seen_us or (p.vehicle_id, p.first_us) in seen:
            continue
        seen.add((p.vehicle_id, p.first_us))
        recorded.append(
            {
                "vehicle_id": p.vehicle_id,
                "segment_id": p.segment_id,
                "first_us": p.first_us,
                "last_us": p.last_us,
                "first_seen": _iso(p.first_us),
                "last_seen": _iso(p.last_us),
                "mean": p.mean,
                "readings": p.readings,
            }
        )
    if not recorded:
        return dict(verification)
    recorded.sort(key=lambda p: (p["first_us"], p["vehicle_id"]))
    gap_us = drive_gap_s * 1e6
    drives: list[dict[str, Any]] = []
    for p in recorded:
        same = next(
            (
                d
                for d in drives
                if d["vehicle_id"] == p["vehicle_id"] and p["first_us"] - d["last_us"] < gap_us
            ),
            None,
        )
        if same is None:
            drives.append(
                {"vehicle_id": p["vehicle_id"], "first_us": p["first_us"], "last_us": p["last_us"]}
            )
        else:
            same["last_us"] = max(same["last_us"], p["last_us"])
    means = [float(p["mean"]) for p in recorded]
    return {
        **verification,
        "passes": recorded,
        "drives": len(drives),
        "last_pass_at": _iso(max(p["last_us"] for p in recorded)),
        "after": {"mean": sum(means) / len(means), "max_pass_mean": max(means)},
    }


_CANDIDATES = """
SELECT id, pollutant, segments, last_seen, peak_value, last_value, peak_ratio, limit_value,
       verification
FROM alerts
WHERE kind = $1 AND status <> 'resolved' AND segments && $2::bigint[]
ORDER BY id
FOR UPDATE SKIP LOCKED
"""

_UPDATE = """
UPDATE alerts AS a
SET verification = x.verification::jsonb,
    stale_since = NULL,
    status = CASE WHEN x.resolve THEN 'resolved' ELSE a.status END,
    resolved_by = CASE WHEN x.resolve THEN 'verification' ELSE a.resolved_by END,
    resolved_at = CASE WHEN x.resolve THEN now() ELSE a.resolved_at END,
    resolution = CASE WHEN x.resolve THEN 'verified' ELSE a.resolution END,
    resolve_note = CASE WHEN x.resolve THEN x.note ELSE a.resolve_note END,
    updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::boolean[], $4::text[])
     AS x(id, verification, resolve, note)
WHERE a.id = x.id
"""


def _us(value: dt.datetime) -> int:
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


async def verify_alerts(
    conn: asyncpg.Connection,
    kind: str,
    passes: CleanPasses,
    *,
    required: int,
    drive_gap_s: float,
) -> int:
    """Record clean passes on the unresolved alerts of ``kind`` whose stretch they cross, and
    resolve by verification those with ``required`` clean drives; return how many resolved.

    Rows another transaction holds are skipped (``SKIP LOCKED``), so verification never waits
    on, or deadlocks with, a concurrent batch; such a pass is not counted for that alert."""
    if len(passes) == 0:
        return 0
    # A savepoint inside the batch's transaction; its own transaction when called outside one
    # (the idle tick), so that the rows stay locked from the read to the update.
    async with conn.transaction():
        return await _verify(conn, kind, passes, required=required, drive_gap_s=drive_gap_s)


async def _verify(
    conn: asyncpg.Connection,
    kind: str,
    passes: CleanPasses,
    *,
    required: int,
    drive_gap_s: float,
) -> int:
    segments = np.unique(passes.segment_id).tolist()
    alerts = await conn.fetch(_CANDIDATES, kind, segments)
    ids: list[int] = []
    texts: list[str] = []
    resolves: list[bool] = []
    notes: list[str | None] = []
    for alert in alerts:
        crossing = (passes.pollutant == alert["pollutant"]) & np.isin(
            passes.segment_id, np.asarray(alert["segments"], dtype=np.int64)
        )
        if not crossing.any():
            continue
        mine = passes.records(crossing)
        before = alert["verification"]
        if isinstance(before, str):  # a connection without the JSON codec
            before = json.loads(before)
        if not isinstance(before, dict):
            before = {}
        after = fold_passes(
            before, mine, last_seen_us=_us(alert["last_seen"]), drive_gap_s=drive_gap_s
        )
        if after == before:
            continue
        after.setdefault(
            "before",
            {
                "peak_value": alert["peak_value"],
                "last_value": alert["last_value"],
                "peak_ratio": alert["peak_ratio"],
                "limit_value": alert["limit_value"],
            },
        )
        after["required"] = required
        done = int(after.get("drives", 0)) >= required
        ids.append(int(alert["id"]))
        texts.append(json.dumps(after))
        resolves.append(done)
        notes.append(
            f"resolved by verification: {after['drives']} later clean drive(s) over the stretch"
            if done
            else None
        )
    if not ids:
        return 0
    await conn.execute(_UPDATE, ids, texts, resolves, notes)
    return sum(resolves)
