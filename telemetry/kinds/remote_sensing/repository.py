"""Remote-sensing passes, their reference tables and the high-emitter register: all the SQL of
the ``remote_sensing`` kind.

Writes run on the ingest batch's connection inside its transaction; reads for the API take the
pool.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from telemetry.alerts.exceedance import Exceedance
from telemetry.columns import FloatArray, IntArray
from telemetry.errors import NotFoundError, ValidationError
from telemetry.kinds.remote_sensing.detection import MEASURED_COLUMNS, RS_POLLUTANTS, Judgement
from telemetry.kinds.remote_sensing.record import RemoteSensingBatch
from telemetry.store import audit
from telemetry.store.audit import Actor
from telemetry.store.errors import constraint_errors
from telemetry.store.staging import Staging, first_of_each_key, json_text
from telemetry.store.versions import check_range, superseded_by

__all__ = [
    "PlateHistory",
    "Reference",
    "create_limit",
    "fetch_plate_history",
    "high_emitter_status",
    "insert_passes",
    "list_gates",
    "list_high_emitters",
    "list_limits",
    "list_plate_colours",
    "list_plate_passes",
    "load_reference",
    "lock_plates",
    "pass_statistics",
    "resolve_by_clean_passes",
    "update_gate",
    "upsert_high_emitters",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_STAGING = "rs_staging"
# The advisory-lock namespace of plates (two-key form: it never collides with one-key locks).
_PLATE_LOCK_SPACE = 0x5253

_MEASURED = MEASURED_COLUMNS
_OVER = tuple(f"{p}_over" for p in RS_POLLUTANTS)


def _us(column: str) -> str:
    return f"TIMESTAMPTZ 'epoch' + {column} * INTERVAL '1 microsecond'"


def _epoch_us(column: str) -> str:
    return f"(EXTRACT(EPOCH FROM {column}) * 1000000)::bigint"


# --- reference data ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    """The rows the judgement needs: gates, limits and the rule's parameters."""

    gates: list[dict[str, Any]]
    limits: list[dict[str, Any]]
    rule: list[tuple[str, int]]


async def load_reference(pool: asyncpg.Pool) -> Reference:
    """Rows of ``rs_gates`` (in check order), ``rs_limits`` and ``rs_rule_params``."""
    async with pool.acquire() as conn:
        gates = await conn.fetch(
            "SELECT id, parameter, min_value, max_value, applies_to, reason, source, confirmed "
            "FROM rs_gates ORDER BY id"
        )
        limits = await conn.fetch(
            "SELECT id, fuel_type, pollutant, limit_value, unit, source, confirmed, "
            "effective_from, effective_to FROM rs_limits ORDER BY id"
        )
        rule = await conn.fetch("SELECT name, value FROM rs_rule_params")
    return Reference(
        gates=[dict(r) for r in gates],
        limits=[dict(r) for r in limits],
        rule=[(r["name"], r["value"]) for r in rule],
    )


async def list_plate_colours(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """The plate-colour mapping, by scheme and code."""
    rows = await pool.fetch(
        "SELECT scheme, code, colour, source FROM plate_colors ORDER BY scheme, code"
    )
    return [dict(r) for r in rows]


_LIMIT_COLUMNS = (
    "id, fuel_type, pollutant, limit_value, unit, source, confirmed, effective_from, "
    "effective_to, note"
)
_GATE_COLUMNS = "id, parameter, min_value, max_value, applies_to, reason, source, confirmed, note"


async def list_limits(
    pool: asyncpg.Pool, *, fuel_type: str | None = None, pollutant: str | None = None
) -> list[dict[str, Any]]:
    """Rows of ``rs_limits`` (past, current and future), optionally of one fuel type and / or
    pollutant, by fuel type, pollutant and effective date."""
    rows = await pool.fetch(
        f"SELECT {_LIMIT_COLUMNS} FROM rs_limits "
        "WHERE ($1::text IS NULL OR fuel_type = $1) AND ($2::text IS NULL OR pollutant = $2) "
        "ORDER BY fuel_type, pollutant, effective_from",
        fuel_type,
        pollutant,
    )
    return [dict(r) for r in rows]


async def create_limit(
    pool: asyncpg.Pool,
    *,
    fuel_type: str,
    pollutant: str,
    limit_value: float,
    unit: str,
    source: str,
    confirmed: bool,
    effective_from: dt.date,
    effective_to: dt.date | None = None,
    note: str | None = None,
    by: Actor,
) -> dict[str, Any]:
    """Add an ``rs_limits`` row effective over [effective_from, effective_to) (CST calendar
    dates) and return it; audited as made ``by``.

    The unit must be the one the pass reports the pollutant in (see
    :data:`~telemetry.kinds.remote_sensing.detection.RS_POLLUTANTS`: the limit is compared with that
    column as it is, never converted), and the fuel type one a pass can carry other than
    ``'unknown'``. If the new row starts inside an open-ended row of the same fuel type and
    pollutant, that row is closed at ``effective_from`` in the same transaction.

    The values are checked by :func:`~telemetry.kinds.remote_sensing.checks.check_limit`
    first. Raises :class:`ValidationError` for a bad date range, and :class:`ConflictError`
    when the range overlaps another row of the same key.
    """
    check_range(effective_from, effective_to)
    async with pool.acquire() as conn, conn.transaction():
        # Serialize changes to one (fuel type, pollutant): the overlap check reads rows that a
        # concurrent insert could otherwise invalidate.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('rs_limits/' || $1 || '/' || $2, 0))",
            fuel_type,
            pollutant,
        )
        existing = await conn.fetch(
            "SELECT id, effective_from, effective_to FROM rs_limits "
            "WHERE fuel_type = $1 AND pollutant = $2 ORDER BY effective_from",
            fuel_type,
            pollutant,
        )
        superseded = superseded_by(
            existing, effective_from, effective_to, key=f"{fuel_type}/{pollutant}", noun="limit"
        )
        if superseded is not None:
            before = await conn.fetchrow(
                f"SELECT {_LIMIT_COLUMNS} FROM rs_limits WHERE id = $1", superseded
            )
            after = await conn.fetchrow(
                f"UPDATE rs_limits SET effective_to = $2 WHERE id = $1 RETURNING {_LIMIT_COLUMNS}",
                superseded,
                effective_from,
            )
            await audit.record(
                conn,
                by,
                action="rs_limit.supersede",
                entity="rs_limit",
                entity_id=superseded,
                before=before,
                after=after,
            )
        with constraint_errors():
            created = await conn.fetchrow(
                "INSERT INTO rs_limits (fuel_type, pollutant, limit_value, unit, source, "
                "confirmed, effective_from, effective_to, note) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_LIMIT_COLUMNS}",
                fuel_type,
                pollutant,
                float(limit_value),
                unit,
                source,
                confirmed,
                effective_from,
                effective_to,
                note,
            )
        assert created is not None
        await audit.record(
            conn,
            by,
            action="rs_limit.create",
            entity="rs_limit",
            entity_id=created["id"],
            before=None,
            after=created,
        )
    return dict(created)


async def list_gates(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Rows of ``rs_gates`` in the order they are checked (by id)."""
    rows = await pool.fetch(f"SELECT {_GATE_COLUMNS} FROM rs_gates ORDER BY id")
    return [dict(r) for r in rows]


async def update_gate(
    pool: asyncpg.Pool,
    gate_id: int,
    *,
    min_value: float | None,
    max_value: float | None,
    source: str,
    confirmed: bool,
    note: str | None = None,
    by: Actor,
) -> dict[str, Any]:
    """Replace a gate's bounds, source, confirmed flag and note; return the row. Audited as
    made ``by``.

    A bound is a finite number in the unit its parameter names, or None for no bound; a pass
    is invalid when its value lies below ``min_value`` or above ``max_value`` (a bound equal
    to the value passes). The parameter, the fuel type it applies to and the reason code stay.

    Raises :class:`NotFoundError` for an unknown id and :class:`ValidationError` when both
    bounds are None, a bound is not finite or ``min_value > max_value``.
    """
    for name, bound in (("min_value", min_value), ("max_value", max_value)):
        if bound is not None and not math.isfinite(bound):
            raise ValidationError(f"{name} must be a finite number or null, got {bound}")
    if min_value is None and max_value is None:
        raise ValidationError("a gate needs min_value, max_value or both")
    if min_value is not None and max_value is not None and min_value > max_value:
        raise ValidationError(f"min_value {min_value} is above max_value {max_value}")
    if not source.strip():
        raise ValidationError("a gate needs its source")
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow(
            f"SELECT {_GATE_COLUMNS} FROM rs_gates WHERE id = $1 FOR UPDATE", gate_id
        )
        if before is None:
            raise NotFoundError(f"no remote-sensing gate {gate_id}")
        with constraint_errors():
            row = await conn.fetchrow(
                "UPDATE rs_gates SET min_value = $2, max_value = $3, source = $4, confirmed = $5, "
                f"note = $6 WHERE id = $1 RETURNING {_GATE_COLUMNS}",
                gate_id,
                min_value,
                max_value,
                source,
                confirmed,
                note,
            )
        await audit.record(
            conn,
            by,
            action="rs_gate.update",
            entity="rs_gate",
            entity_id=gate_id,
            before=before,
            after=row,
        )
    return dict(row)


# --- the ingest batch ----------------------------------------------------------------------


async def lock_plates(conn: asyncpg.Connection, plates: Sequence[str]) -> None:
    """Hold a transaction-scoped advisory lock per plate, taken in one fixed order, so that
    two batches judging the same plate run one after the other and neither misses the
    other's passes."""
    if not plates:
        return
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, h) FROM "
        "(SELECT DISTINCT hashtext(p) AS h FROM unnest($2::text[]) AS p ORDER BY h) AS k",
        _PLATE_LOCK_SPACE,
        list(plates),
    )


_STAGING_COLUMNS = (
    "row_no",
    "vehicle_id",
    "ts_us",
    "received_us",
    "lane",
    "lat",
    "lon",
    "site_id",
    "segment_id",
    "snap_distance_m",
    "plate",
    "plate_color_scheme",
    "plate_color_code",
    "fuel_type",
    *_MEASURED,
    "images",
    "vsp_kw_t",
    "valid",
    "invalid_reason",
    *_OVER,
    "extra",
)

_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    row_no integer NOT NULL,
    vehicle_id text NOT NULL,
    ts_us bigint NOT NULL,
    received_us bigint NOT NULL,
    lane smallint NOT NULL,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    site_id text,
    segment_id bigint NOT NULL,
    snap_distance_m double precision,
    plate text,
    plate_color_scheme text NOT NULL,
    plate_color_code text,
    fuel_type text NOT NULL,
    {", ".join(f"{c} double precision" for c in _MEASURED)},
    images text[] NOT NULL,
    vsp_kw_t double precision,
    valid boolean NOT NULL,
    invalid_reason text,
    {", ".join(f"{c} boolean" for c in _OVER)},
    extra text
) ON COMMIT DELETE ROWS
"""

# The plate colour is resolved through plate_colors here; an unknown code keeps the code and
# leaves the colour NULL.
_INSERT = f"""
WITH inserted AS (
    INSERT INTO rs_passes (
        vehicle_id, ts, lane, received_at, lat, lon, site_id, segment_id, snap_distance_m,
        plate, plate_color_scheme, plate_color_code, plate_colour, fuel_type,
        {", ".join(_MEASURED)}, images, vsp_kw_t, valid, invalid_reason, {", ".join(_OVER)},
        extra)
    SELECT s.vehicle_id, {_us("s.ts_us")}, s.lane, {_us("s.received_us")}, s.lat, s.lon,
           s.site_id, NULLIF(s.segment_id, -1), NULLIF(s.snap_distance_m, 'NaN'),
           s.plate, s.plate_color_scheme, s.plate_color_code, c.colour, s.fuel_type,
           {", ".join(f"NULLIF(s.{c}, 'NaN')" for c in _MEASURED)}, s.images,
           NULLIF(s.vsp_kw_t, 'NaN'), s.valid, NULLIF(s.invalid_reason, ''),
           {", ".join(f"s.{c}" for c in _OVER)}, s.extra::jsonb
    FROM {_STAGING} s
    LEFT JOIN plate_colors c ON c.scheme = s.plate_color_scheme AND c.code = s.plate_color_code
    ORDER BY s.vehicle_id, s.ts_us, s.lane
    ON CONFLICT (vehicle_id, ts, lane) DO NOTHING
    RETURNING vehicle_id, ts, lane
)
SELECT s.row_no
FROM inserted i
JOIN {_STAGING} s ON s.vehicle_id = i.vehicle_id AND {_us("s.ts_us")} = i.ts AND s.lane = i.lane
"""
_STAGED = Staging(_STAGING, _STAGING_COLUMNS, _CREATE_STAGING, _INSERT)


def _flags(judged: npt.NDArray[np.bool_], over: npt.NDArray[np.bool_]) -> list[bool | None]:
    out = np.full(judged.shape[0], None, dtype=object)
    out[judged] = over[judged]
    return list(out.tolist())


async def insert_passes(
    conn: asyncpg.Connection, batch: RemoteSensingBatch, judgement: Judgement
) -> npt.NDArray[np.intp]:
    """Insert the batch with its judgement; return the positions (into ``batch``) of passes
    that were new. A pass whose (vehicle_id, ts, lane) is stored already is skipped."""
    if len(batch) == 0:
        return np.empty(0, dtype=np.intp)
    keep = first_of_each_key(batch.vehicle_id, batch.ts_us, batch.lane)
    j = judgement
    columns = [
        keep.tolist(),
        batch.vehicle_id[keep].tolist(),
        batch.ts_us[keep].tolist(),
        batch.received_us[keep].tolist(),
        batch.lane[keep].tolist(),
        batch.lat[keep].tolist(),
        batch.lon[keep].tolist(),
        batch.site_id[keep].tolist(),
        j.segment_id[keep].tolist(),
        j.snap_distance_m[keep].tolist(),
        batch.plate[keep].tolist(),
        batch.plate_color_scheme[keep].tolist(),
        batch.plate_color[keep].tolist(),
        batch.fuel_type[keep].tolist(),
        *(getattr(batch, c)[keep].tolist() for c in _MEASURED),
        batch.images[keep].tolist(),
        j.vsp_kw_t[keep].tolist(),
        j.valid[keep].tolist(),
        j.reason[keep].tolist(),
        *(_flags(j.judged[p][keep], j.over[p][keep]) for p in RS_POLLUTANTS),
        [json_text(e) for e in batch.extra[keep].tolist()],
    ]
    return await _STAGED.insert_new(conn, columns)


@dataclass(frozen=True, slots=True)
class PlateHistory:
    """Stored valid passes of some plates, column-wise. ``over`` per pollutant is 1.0 (over
    the limit), 0.0 (under) or NaN (not judged); ``segment_id`` is -1 where unsnapped;
    ``is_new`` marks the passes the current batch inserted."""

    vehicle_id: npt.NDArray[np.object_]
    ts_us: IntArray
    lane: IntArray
    plate: npt.NDArray[np.object_]
    plate_colour: npt.NDArray[np.object_]
    fuel_type: npt.NDArray[np.object_]
    site_id: npt.NDArray[np.object_]
    segment_id: IntArray
    values: dict[str, FloatArray]
    over: dict[str, FloatArray]
    is_new: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])


_HISTORY = f"""
SELECT p.vehicle_id, {_epoch_us("p.ts")} AS ts_us, p.lane, p.plate, p.plate_colour,
       p.fuel_type, p.site_id, coalesce(p.segment_id, -1) AS segment_id,
       {", ".join(f"p.{column}" for column, _ in RS_POLLUTANTS.values())},
       {", ".join(f"p.{c}" for c in _OVER)},
       (k.vehicle_id IS NOT NULL) AS is_new
FROM rs_passes p
LEFT JOIN unnest($3::text[], $4::bigint[], $5::smallint[]) AS k(vehicle_id, ts_us, lane)
       ON k.vehicle_id = p.vehicle_id AND {_us("k.ts_us")} = p.ts AND k.lane = p.lane
WHERE p.plate = ANY($1::text[]) AND p.valid AND p.ts >= {_us("$2::bigint")}
  AND ({" OR ".join(f"p.{c} IS NOT NULL" for c in _OVER)})
"""


def _floats(rows: Sequence[asyncpg.Record], name: str) -> FloatArray:
    return np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=np.float64)


def _objects(rows: Sequence[asyncpg.Record], name: str) -> npt.NDArray[np.object_]:
    out = np.empty(len(rows), dtype=object)
    out[:] = [r[name] for r in rows]
    return out


async def fetch_plate_history(
    conn: asyncpg.Connection,
    *,
    plates: Sequence[str],
    since_us: int,
    new_keys: tuple[npt.NDArray[np.object_], IntArray, IntArray],
) -> PlateHistory:
    """The valid, judged passes of ``plates`` measured at or after ``since_us``, marking those
    whose (vehicle_id, ts, lane) is among ``new_keys``. Runs in the caller's transaction, so
    the batch's own passes are included."""
    vehicles, ts, lanes = new_keys
    rows = await conn.fetch(
        _HISTORY, list(plates), since_us, vehicles.tolist(), ts.tolist(), lanes.tolist()
    )
    return PlateHistory(
        vehicle_id=_objects(rows, "vehicle_id"),
        ts_us=np.array([r["ts_us"] for r in rows], dtype=np.int64),
        lane=np.array([r["lane"] for r in rows], dtype=np.int64),
        plate=_objects(rows, "plate"),
        plate_colour=_objects(rows, "plate_colour"),
        fuel_type=_objects(rows, "fuel_type"),
        site_id=_objects(rows, "site_id"),
        segment_id=np.array([r["segment_id"] for r in rows], dtype=np.int64),
        values={column: _floats(rows, column) for column, _ in RS_POLLUTANTS.values()},
        over={p: _floats(rows, f"{p}_over") for p in RS_POLLUTANTS},
        is_new=np.array([r["is_new"] for r in rows], dtype=bool),
    )


_UPSERT_HIGH_EMITTERS = """
INSERT INTO rs_high_emitters AS h (
    plate, pollutant, fuel_type, plate_colour, first_confirmed_at, last_confirmed_at,
    confirmations, last_value, limit_value, unit, source, evidence)
SELECT x.plate, x.pollutant, x.fuel_type, x.plate_colour, x.first_at, x.last_at, x.n,
       x.last_value, x.limit_value, x.unit, x.source, x.evidence::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
            $6::timestamptz[], $7::integer[], $8::float8[], $9::float8[], $10::text[],
            $11::text[], $12::text[])
     AS x(plate, pollutant, fuel_type, plate_colour, first_at, last_at, n, last_value,
          limit_value, unit, source, evidence)
ORDER BY x.plate, x.pollutant
ON CONFLICT (plate, pollutant) DO UPDATE SET
    confirmations = h.confirmations + EXCLUDED.confirmations,
    first_confirmed_at = LEAST(h.first_confirmed_at, EXCLUDED.first_confirmed_at),
    last_confirmed_at = GREATEST(h.last_confirmed_at, EXCLUDED.last_confirmed_at),
    fuel_type = CASE WHEN EXCLUDED.last_confirmed_at >= h.last_confirmed_at
                     THEN EXCLUDED.fuel_type ELSE h.fuel_type END,
    plate_colour = CASE WHEN EXCLUDED.last_confirmed_at >= h.last_confirmed_at
                        THEN EXCLUDED.plate_colour ELSE h.plate_colour END,
    last_value = CASE WHEN EXCLUDED.last_confirmed_at >= h.last_confirmed_at
                      THEN EXCLUDED.last_value ELSE h.last_value END,
    limit_value = CASE WHEN EXCLUDED.last_confirmed_at >= h.last_confirmed_at
                       THEN EXCLUDED.limit_value ELSE h.limit_value END,
    unit = CASE WHEN EXCLUDED.last_confirmed_at >= h.last_confirmed_at
                THEN EXCLUDED.unit ELSE h.unit END,
    source = CASE WHEN EXCLUDED.last_confirmed_at >= h.last_confirmed_at
                  THEN EXCLUDED.source ELSE h.source END,
    evidence = CASE WHEN EXCLUDED.last_confirmed_at >= h.last_confirmed_at
                    THEN EXCLUDED.evidence ELSE h.evidence END,
    updated_at = now()
"""


def _timestamp(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


async def upsert_high_emitters(conn: asyncpg.Connection, found: Sequence[Exceedance]) -> None:
    """Record high-emitter confirmations (``rule == 'high_emitter'`` exceedances whose
    ``details`` carry the plate, fuel type, colour and evidence), one row per plate and
    pollutant; the latest confirmation's evidence wins."""
    groups: dict[tuple[str, str], list[Exceedance]] = {}
    for e in found:
        groups.setdefault((str(e.details["plate"]), e.pollutant), []).append(e)
    rows = []
    for (plate, pollutant), group in groups.items():
        latest = max(group, key=lambda e: e.last_us)
        rows.append(
            (
                plate,
                pollutant,
                str(latest.details["fuel_type"]),
                latest.details.get("plate_colour"),
                _timestamp(min(e.last_us for e in group)),
                _timestamp(latest.last_us),
                len(group),
                latest.value,
                latest.limit_value,
                latest.unit,
                latest.source,
                json.dumps(latest.details["evidence"]),
            )
        )
    columns = [list(c) for c in zip(*rows, strict=True)]
    await conn.execute(_UPSERT_HIGH_EMITTERS, *columns)


# --- reads for the API ---------------------------------------------------------------------

_PASS_COLUMNS = f"""
    vehicle_id, ts, lane, site_id, segment_id, lat, lon, plate, plate_color_scheme,
    plate_color_code, plate_colour, fuel_type, {", ".join(_MEASURED)}, images, vsp_kw_t,
    valid, invalid_reason, {", ".join(_OVER)}
"""


def _pass(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    item["exceeded"] = [p for p in RS_POLLUTANTS if item.pop(f"{p}_over") is True]
    return item


async def list_plate_passes(
    pool: asyncpg.Pool,
    plate: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """A plate's passes, newest first, with their judgement; ``exceeded`` lists the
    pollutants over their limit."""
    rows = await pool.fetch(
        f"SELECT {_PASS_COLUMNS} FROM rs_passes "
        "WHERE plate = $1 AND ($2::timestamptz IS NULL OR ts >= $2) "
        "AND ($3::timestamptz IS NULL OR ts < $3) "
        "ORDER BY ts DESC, vehicle_id, lane LIMIT $4",
        plate,
        since,
        until,
        limit,
    )
    return [_pass(r) for r in rows]


_HIGH_EMITTER_COLUMNS = """
    id, plate, pollutant, fuel_type, plate_colour, first_confirmed_at, last_confirmed_at,
    confirmations, last_value, limit_value, unit, source, evidence
"""


async def high_emitter_status(pool: asyncpg.Pool, plate: str) -> list[dict[str, Any]]:
    """Every high-emitter record of a plate (one per pollutant), latest first."""
    rows = await pool.fetch(
        f"SELECT {_HIGH_EMITTER_COLUMNS} FROM rs_high_emitters WHERE plate = $1 "
        "ORDER BY last_confirmed_at DESC, pollutant",
        plate,
    )
    return [dict(r) for r in rows]


async def list_high_emitters(
    pool: asyncpg.Pool,
    *,
    confirmed_since: dt.datetime,
    confirmed_until: dt.datetime | None = None,
    pollutant: str | None = None,
    fuel_type: str | None = None,
    after: tuple[dt.datetime, int] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """High-emitter records last confirmed in ``[confirmed_since, confirmed_until)``, latest
    first (by last confirmation, then id); ``after`` continues below a previous page's last
    ``(last_confirmed_at, id)``."""
    after_at, after_id = after if after is not None else (None, None)
    rows = await pool.fetch(
        f"SELECT {_HIGH_EMITTER_COLUMNS} FROM rs_high_emitters "
        "WHERE last_confirmed_at >= $1 "
        "AND ($2::text IS NULL OR pollutant = $2) "
        "AND ($3::text IS NULL OR fuel_type = $3) "
        "AND ($4::timestamptz IS NULL OR (last_confirmed_at, id) < ($4, $5::bigint)) "
        "AND ($7::timestamptz IS NULL OR last_confirmed_at < $7) "
        "ORDER BY last_confirmed_at DESC, id DESC LIMIT $6",
        confirmed_since,
        pollutant,
        fuel_type,
        after_at,
        after_id,
        limit,
        confirmed_until,
    )
    return [dict(r) for r in rows]


def _statistics_sql(group: str) -> str:
    per_pollutant = ", ".join(
        f"count(*) FILTER (WHERE {p}_over IS NOT NULL) AS {p}_judged, "
        f"count(*) FILTER (WHERE {p}_over) AS {p}_exceeded"
        for p in RS_POLLUTANTS
    )
    any_over = " OR ".join(f"{p}_over" for p in RS_POLLUTANTS)
    return f"""
        SELECT {group} AS key,
               count(*) AS passes,
               count(*) FILTER (WHERE valid) AS valid,
               count(*) FILTER (WHERE valid AND ({any_over})) AS exceeding,
               min(ts) AS first_pass, max(ts) AS last_pass,
               {per_pollutant}
        FROM rs_passes
        WHERE ts >= $1 AND ts < $2 AND {group} IS NOT NULL
          AND ($3::text IS NULL OR {group}::text = $3)
        GROUP BY {group}
        ORDER BY {group}
        LIMIT $4
    """


_STATISTICS = {"site": _statistics_sql("site_id"), "segment": _statistics_sql("segment_id")}


async def pass_statistics(
    pool: asyncpg.Pool,
    *,
    by: str,
    since: dt.datetime,
    until: dt.datetime,
    key: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Per site (``by='site'``) or road segment (``by='segment'``) in ``[since, until)``:
    passes, valid passes, valid passes over any limit, and per pollutant the valid passes
    judged and over the limit (``<pollutant>_judged``, ``<pollutant>_exceeded``). ``key``
    restricts to one site id or segment id."""
    if by not in _STATISTICS:
        raise ValueError(f"statistics are by 'site' or 'segment', not {by!r}")
    rows = await pool.fetch(_STATISTICS[by], since, until, key, limit)
    return [dict(r) for r in rows]


# A high-emitter alert stays open until a later valid pass of the same plate comes back under
# the limit for that pollutant (or an officer resolves it with a note; docs/adr/0009). The
# pass must be measured after the alert's last_seen, so a late upload of an old pass never
# closes it. Rows another transaction holds are skipped rather than waited for.
_RESOLVE_BY_CLEAN = """
WITH clean AS (
    SELECT 'plate:' || x.plate AS subject, x.pollutant, x.vehicle_id, x.ts_us, x.value
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::float8[])
         AS x(plate, pollutant, vehicle_id, ts_us, value)
),
locked AS (
    SELECT a.id, a.subject, a.pollutant, a.last_seen
    FROM alerts a
    WHERE a.kind = 'remote_sensing' AND a.rule = 'high_emitter' AND a.status <> 'resolved'
      AND (a.subject, a.pollutant) IN (SELECT subject, pollutant FROM clean)
    ORDER BY a.id
    FOR UPDATE SKIP LOCKED
),
target AS (
    SELECT DISTINCT ON (l.id) l.id, c.vehicle_id, c.ts_us, c.value
    FROM locked l
    JOIN clean c ON c.subject = l.subject AND c.pollutant = l.pollutant
    WHERE TIMESTAMPTZ 'epoch' + c.ts_us * INTERVAL '1 microsecond' > l.last_seen
    ORDER BY l.id, c.ts_us
)
UPDATE alerts AS a
SET status = 'resolved', resolved_by = 'verification', resolved_at = now(),
    resolution = 'verified',
    resolve_note = 'resolved by verification: a later valid pass of the plate was under the limit',
    verification = jsonb_build_object(
        'passes', jsonb_build_array(jsonb_build_object(
            'vehicle_id', t.vehicle_id,
            'ts', TIMESTAMPTZ 'epoch' + t.ts_us * INTERVAL '1 microsecond',
            'value', t.value)),
        'before', jsonb_build_object('last_value', a.last_value, 'peak_value', a.peak_value,
                                     'limit_value', a.limit_value),
        'after', jsonb_build_object('value', t.value)),
    updated_at = now()
FROM target t
WHERE a.id = t.id
"""


async def resolve_by_clean_passes(
    conn: asyncpg.Connection,
    plate: list[str],
    pollutant: list[str],
    vehicle_id: list[str],
    ts_us: list[int],
    value: list[float],
) -> int:
    """Resolve by verification the open high-emitter alerts of these plates and pollutants
    with a clean pass (aligned lists) measured after them; return how many."""
    if not plate:
        return 0
    status = await conn.execute(_RESOLVE_BY_CLEAN, plate, pollutant, vehicle_id, ts_us, value)
    return int(status.split()[-1])
