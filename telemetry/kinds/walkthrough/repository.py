"""All the SQL of the walk-through kind: readings (bulk, idempotent writes), the threshold
table (limits versioned by effective date: CST calendar dates, end exclusive; a limit is never
edited in place, a new row takes effect on a date and closes the open-ended row it
supersedes) and a vehicle's track."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from telemetry.clock import PG_EPOCH_US
from telemetry.columns import FloatArray, IntArray
from telemetry.errors import NotFoundError, ValidationError
from telemetry.kinds.walkthrough.detection.calibration import flagged_channels, mark_calibration
from telemetry.kinds.walkthrough.detection.thresholds import ThresholdTable
from telemetry.kinds.walkthrough.record import POLLUTANTS, WalkthroughBatch
from telemetry.store import audit
from telemetry.store.audit import Actor
from telemetry.store.errors import constraint_errors
from telemetry.store.staging import binary_copy, first_of_each_key, json_text
from telemetry.store.versions import check_range, superseded_by

__all__ = [
    "aqi_breakpoints",
    "create_threshold",
    "data_quality",
    "extra_series",
    "insert_walkthrough",
    "list_thresholds",
    "load_segment_roads",
    "load_thresholds",
    "pass_backgrounds",
    "segment_medians",
    "segment_stats",
    "track_geojson",
]

_STAGING = "walkthrough_staging"


_FLOAT_COLUMNS = (
    "lat",
    "lon",
    "speed_kmh",
    "heading_deg",
    "pm25",
    "pm10",
    "no2",
    "o3",
    "so2",
    "co",
    "tvoc",
    "temp_c",
    "rh_pct",
    "wind_speed_ms",
    "wind_dir_deg",
)
_STAGING_COLUMNS = (
    "row_no",
    "vehicle_no",
    "ts",
    "received_at",
    *_FLOAT_COLUMNS,
    "flag",
    "segment_id",
    "snap_distance_m",
)
_NULLABLE = frozenset(_FLOAT_COLUMNS) - {"lat", "lon"} | {"snap_distance_m"}


def _us(column: str) -> str:
    return f"TIMESTAMPTZ 'epoch' + {column} * INTERVAL '1 microsecond'"


# The staging rows are fixed-width, built by numpy as one binary COPY stream: the vehicle as
# its number in $1 (the batch's vehicles, sorted), times as timestamps, NaN for an absent value
# (NULL here). The few rows with extra fields or a fault come as parameters: ($2, $3) row and
# JSON text, ($4, $5, $6) row, reason and comma-separated pollutants.
# The insert returns how many rows it stored; only when that is fewer than were staged (a
# redelivery) does the second statement tell which: those stored by this transaction
# (stored_at from its start on) from this delivery (a row stored before by another worker,
# from another delivery of the message, has that delivery's arrival time).
_VEHICLES = "unnest($1::text[]) WITH ORDINALITY AS v(vehicle_id, no)"
_STAGED_FLOATS = ", ".join(
    f"NULLIF(s.{c}, 'NaN')" if c in _NULLABLE else f"s.{c}" for c in _FLOAT_COLUMNS
)
_INSERT = f"""
WITH inserted AS (
    INSERT INTO walkthrough_readings (
        vehicle_id, ts, received_at, {", ".join(_FLOAT_COLUMNS)},
        flag, segment_id, snap_distance_m, extra, fault, fault_pollutants)
    SELECT v.vehicle_id, s.ts, s.received_at,
           {_STAGED_FLOATS},
           s.flag, NULLIF(s.segment_id, -1), NULLIF(s.snap_distance_m, 'NaN'), e.extra::jsonb,
           f.fault, string_to_array(f.pollutants, ',')
    FROM {_STAGING} s
    JOIN {_VEHICLES} ON v.no = s.vehicle_no
    LEFT JOIN unnest($2::int[], $3::text[]) AS e(row_no, extra) ON e.row_no = s.row_no
    LEFT JOIN unnest($4::int[], $5::text[], $6::text[]) AS f(row_no, fault, pollutants)
           ON f.row_no = s.row_no
    ORDER BY s.vehicle_no, s.ts
    ON CONFLICT (vehicle_id, ts) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""
_INSERTED_ROWS = f"""
SELECT s.row_no
FROM {_STAGING} s
JOIN {_VEHICLES} ON v.no = s.vehicle_no
JOIN walkthrough_readings r
  ON r.vehicle_id = v.vehicle_id AND r.ts = s.ts
 AND r.received_at = s.received_at AND r.stored_at >= now()
"""

_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    row_no integer NOT NULL,
    vehicle_no integer NOT NULL,
    ts timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    {", ".join(f"{c} double precision" for c in _FLOAT_COLUMNS)},
    flag char(1) NOT NULL,
    segment_id bigint NOT NULL,
    snap_distance_m double precision NOT NULL
) ON COMMIT DELETE ROWS
"""


async def _once(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as an async iterable: asyncpg sends it as it is, where a file object would be
    read in a thread of the default executor, one hand-over per 512 KiB."""
    yield data


async def insert_walkthrough(
    conn: asyncpg.Connection,
    batch: WalkthroughBatch,
    segment_id: IntArray,
    snap_distance_m: FloatArray,
    *,
    fault: npt.NDArray[np.object_] | None = None,
    fault_pollutants: npt.NDArray[np.object_] | None = None,
    calibrated: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.intp]:
    """Insert the batch; return the positions (into ``batch``) of rows that were new.

    ``fault`` and ``fault_pollutants`` (comma-separated) are each reading's sensor fault
    (``''``: none). Channels under calibration, flagged by the vehicle (``batch.calibration``)
    or given in ``calibrated`` (readings × pollutants, e.g. an operator's registered periods),
    are stored with the reason ``'calibration'`` instead (docs/domain.md §5.9). Must run
    inside the caller's transaction. A reading whose (vehicle_id, ts) is already stored is
    skipped, so a redelivered message changes nothing.
    """
    if len(batch) == 0:
        return np.empty(0, dtype=np.intp)
    none = np.full(len(batch), "", dtype=object)
    fault = none if fault is None else fault
    fault_pollutants = none if fault_pollutants is None else fault_pollutants
    channels = flagged_channels(batch.calibration)
    if calibrated is not None:
        channels = channels | calibrated
    fault, fault_pollutants = mark_calibration(fault, fault_pollutants, channels)
    vehicles, vehicle_no = np.unique(batch.vehicle_id.astype(str), return_inverse=True)
    vehicle_no = vehicle_no.reshape(-1)
    keep = first_of_each_key(vehicle_no, batch.ts_us)
    k = keep.astype(np.int32)
    stream = binary_copy(
        [
            k,
            vehicle_no[keep].astype(np.int32) + 1,
            batch.ts_us[keep] - PG_EPOCH_US,
            batch.received_us[keep] - PG_EPOCH_US,
            *(getattr(batch, c)[keep].astype(np.float64) for c in _FLOAT_COLUMNS),
            batch.flag[keep].astype("S1"),
            segment_id[keep].astype(np.int64),
            snap_distance_m[keep].astype(np.float64),
        ]
    )
    extra, fault, fault_pollutants = batch.extra[keep], fault[keep], fault_pollutants[keep]
    with_extra = np.flatnonzero(extra.astype(bool))
    faulty = np.flatnonzero(fault.astype(bool))
    await conn.execute(_CREATE_STAGING)
    await conn.copy_to_table(
        _STAGING, source=_once(stream), columns=_STAGING_COLUMNS, format="binary"
    )
    args = (
        vehicles.tolist(),
        k[with_extra].tolist(),
        [json_text(e) for e in extra[with_extra].tolist()],
        k[faulty].tolist(),
        fault[faulty].tolist(),
        [p or None for p in fault_pollutants[faulty].tolist()],
    )
    if await conn.fetchval(_INSERT, *args) == len(keep):
        return keep.astype(np.intp)
    rows = await conn.fetch(_INSERTED_ROWS, args[0])
    new = np.fromiter((r[0] for r in rows), dtype=np.intp, count=len(rows))
    new.sort()
    return new


# --- backgrounds and roads -----------------------------------------------------------------


def _sound(p: str) -> str:
    """Column ``p`` of reading ``r``, absent where a sensor fault concerns it (§5.7)."""
    return f"CASE WHEN '{p}' = ANY(r.fault_pollutants) THEN NULL ELSE r.{p} END"


# Each pass's background: the low percentile of its own vehicle's valid readings (flag 'N')
# measured in the window that ends with the pass (docs/domain.md §5.2). Read from the stored
# readings, so every worker computes the same value, a gap only shrinks the sample (NULL below
# the minimum) and a late upload is judged against the air of its own time.
# A value a sensor fault concerns counts as absent.
_PERCENTILES = ", ".join(
    f"CASE WHEN count({_sound(p)}) >= $5"
    f" THEN percentile_cont($4) WITHIN GROUP (ORDER BY {_sound(p)}) END AS {p}"
    for p in POLLUTANTS
)
_BACKGROUND = f"""
SELECT v.i, {_PERCENTILES}
FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS v(vehicle_id, at_us, i)
LEFT JOIN walkthrough_readings r
       ON r.vehicle_id = v.vehicle_id AND r.flag = 'N'
      AND r.ts >= {_us("(v.at_us - $3)")} AND r.ts <= {_us("v.at_us")}
GROUP BY v.i
ORDER BY v.i
"""


_CACHED = """
SELECT vehicle_id, (extract(epoch FROM at) * 1e6)::bigint AS at_us, levels
FROM walkthrough_backgrounds
WHERE vehicle_id = ANY($1::text[]) AND window_s = $2 AND percentile = $3 AND min_samples = $4
  AND pollutants = $5::text[]
"""

# Rows in vehicle order, so two batches storing the same vehicles lock them in the same order;
# a stored background only moves forward in measurement time.
_STORE = f"""
INSERT INTO walkthrough_backgrounds AS b
    (vehicle_id, at, window_s, percentile, min_samples, pollutants, levels)
SELECT x.vehicle_id, {_us("x.at_us")}, $3, $4, $5, $6::text[],
       ARRAY(SELECT NULLIF(v, 'NaN') FROM unnest(x.levels::float8[]) AS v)
FROM unnest($1::text[], $2::bigint[], $7::text[]) AS x(vehicle_id, at_us, levels)
ORDER BY x.vehicle_id
ON CONFLICT (vehicle_id) DO UPDATE SET
    at = EXCLUDED.at, window_s = EXCLUDED.window_s, percentile = EXCLUDED.percentile,
    min_samples = EXCLUDED.min_samples, pollutants = EXCLUDED.pollutants,
    levels = EXCLUDED.levels, updated_at = now()
WHERE EXCLUDED.at > b.at OR b.window_s <> EXCLUDED.window_s
   OR b.percentile <> EXCLUDED.percentile OR b.min_samples <> EXCLUDED.min_samples
   OR b.pollutants <> EXCLUDED.pollutants
"""


async def pass_backgrounds(
    conn: asyncpg.Connection,
    vehicle_id: npt.NDArray[np.str_],
    at_us: IntArray,
    *,
    window_s: float,
    percentile: float,
    min_samples: int,
    refresh_s: float = 0.0,
) -> FloatArray:
    """Per pass (vehicle and time of its last reading): the ``percentile``-th percentile of the
    vehicle's valid readings in [at - window_s, at], one column per pollutant of
    :data:`POLLUTANTS`; NaN with fewer than ``min_samples`` values.

    The levels are stored per vehicle (table ``walkthrough_backgrounds``) and reused for a pass
    ending within ``refresh_s`` after the stored time, so that each vehicle's window is read at
    most once per ``refresh_s`` of measurement time. A pass before the stored time (late data)
    is computed for its own time and not stored.
    """
    count = len(at_us)
    out = np.full((count, len(POLLUTANTS)), np.nan)
    if count == 0:
        return out
    vehicles = np.asarray([str(v) for v in vehicle_id.tolist()], dtype=object)
    at = np.asarray(at_us, dtype=np.int64)
    min_samples = max(min_samples, 1)
    params = (float(window_s), float(percentile), min_samples, list(POLLUTANTS))
    cached = await conn.fetch(_CACHED, sorted(set(vehicles.tolist())), *params)
    by_vehicle = {row["vehicle_id"]: row for row in cached}
    stored_at = np.array(
        [by_vehicle[v]["at_us"] if v in by_vehicle else -1 for v in vehicles.tolist()],
        dtype=np.int64,
    )
    reuse = (stored_at >= 0) & (at >= stored_at) & (at <= stored_at + round(refresh_s * 1e6))
    for i in np.flatnonzero(reuse).tolist():
        out[i] = [np.nan if v is None else v for v in by_vehicle[vehicles[i]]["levels"]]
    fresh = ~reuse
    todo = np.flatnonzero(fresh)
    if todo.shape[0] == 0:
        return out
    rows = await conn.fetch(
        _BACKGROUND,
        vehicles[todo].tolist(),
        at[todo].tolist(),
        round(window_s * 1e6),
        percentile / 100.0,
        min_samples,
    )
    for row in rows:
        out[todo[row["i"] - 1]] = [np.nan if row[p] is None else row[p] for p in POLLUTANTS]
    # Store each vehicle's newest computed window (the upsert keeps only a newer one).
    newest: dict[str, int] = {}
    for i in todo.tolist():
        if at[i] >= at[newest.get(vehicles[i], i)]:
            newest[vehicles[i]] = i
    keep = [newest[v] for v in sorted(newest)]
    await conn.execute(
        _STORE,
        [vehicles[i] for i in keep],
        [int(at[i]) for i in keep],
        *params[:3],
        params[3],
        [
            "{" + ",".join("NaN" if np.isnan(x) else repr(float(x)) for x in out[i]) + "}"
            for i in keep
        ],
    )
    return out


async def load_segment_roads(pool: asyncpg.Pool) -> dict[int, str]:
    """Every segment's road, as ``'<source>/<road_ref>'``: the stretch an alert groups."""
    rows = await pool.fetch("SELECT id, source, road_ref FROM road_segments")
    return {int(r["id"]): f"{r['source']}/{r['road_ref']}" for r in rows}


# --- thresholds ---------------------------------------------------------------------------

_THRESHOLD_COLUMNS = (
    "id, kind, pollutant, limit_value, unit, averaging, source, tier, severity, "
    "effective_from, effective_to, confirmed, note, created_at"
)


async def load_thresholds(pool: asyncpg.Pool, kind: str) -> ThresholdTable:
    """Every threshold row of vehicle kind ``kind``, as a :class:`ThresholdTable`."""
    return ThresholdTable.from_rows(await list_thresholds(pool, kind=kind))


async def list_thresholds(pool: asyncpg.Pool, *, kind: str | None = None) -> list[dict[str, Any]]:
    """Threshold rows (of one kind, or all), by kind, pollutant, tier and effective date."""
    rows = await pool.fetch(
        f"SELECT {_THRESHOLD_COLUMNS} FROM thresholds WHERE $1::text IS NULL OR kind = $1 "
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
    by: Actor,
) -> dict[str, Any]:
    """Add a threshold row effective over [effective_from, effective_to) and return it.

    If the new row starts inside an open-ended row of the same kind, pollutant and tier, that
    row is closed at ``effective_from`` in the same transaction. Note that a new row with an
    ``effective_to`` then leaves no limit after that date until another row is added. Both
    changes are audited as made ``by``.

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
            before = await conn.fetchrow(
                f"SELECT {_THRESHOLD_COLUMNS} FROM thresholds WHERE id = $1", superseded
            )
            after = await conn.fetchrow(
                "UPDATE thresholds SET effective_to = $2 WHERE id = $1 "
                f"RETURNING {_THRESHOLD_COLUMNS}",
                superseded,
                effective_from,
            )
            await audit.record(
                conn,
                by,
                action="threshold.supersede",
                entity="threshold",
                entity_id=superseded,
                before=before,
                after=after,
            )
        with constraint_errors():
            created = await conn.fetchrow(
                "INSERT INTO thresholds (kind, pollutant, limit_value, unit, averaging, source, "
                "tier, severity, effective_from, effective_to, confirmed, note) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                f"RETURNING {_THRESHOLD_COLUMNS}",
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
        await audit.record(
            conn,
            by,
            action="threshold.create",
            entity="threshold",
            entity_id=created["id"],
            before=None,
            after=created,
        )
    return dict(created)


# --- tracks -------------------------------------------------------------------------------

_UTC_ISO = """to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_POINT_PROPERTIES = ", ".join(f"'{p}', NULLIF({p}, 'NaN')" for p in POLLUTANTS)

# The whole FeatureCollection is built by the server as one JSON text: a day of 1 Hz points is
# 86,400 features, which would otherwise cost a Python object and a validation per point.
_TRACK = f"""
    WITH points AS (
        SELECT ts, lon, lat, segment_id, flag, {", ".join(POLLUTANTS)}
        FROM walkthrough_readings
        WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3
        ORDER BY ts
        LIMIT $4
    ),
    features AS (
        SELECT 0 AS part, NULL::timestamptz AS ts,
               json_build_object(
                   'type', 'Feature',
                   'geometry', json_build_object(
                       'type', 'LineString',
                       'coordinates', json_agg(json_build_array(lon, lat) ORDER BY ts)),
                   'properties', json_build_object(
                       'vehicle_id', $1::text, 'points', count(*),
                       'first_ts', min({_UTC_ISO}), 'last_ts', max({_UTC_ISO}))
               ) AS feature
        FROM points
        HAVING count(*) >= 2
        UNION ALL
        SELECT 1, ts,
               json_build_object(
                   'type', 'Feature',
                   'geometry', json_build_object(
                       'type', 'Point', 'coordinates', json_build_array(lon, lat)),
                   'properties', json_build_object(
                       'ts', {_UTC_ISO}, 'segment_id', segment_id, 'flag', flag,
                       {_POINT_PROPERTIES}))
        FROM points
    )
    SELECT (EXISTS (SELECT 1 FROM vehicles WHERE vehicle_id = $1)
            OR EXISTS (SELECT 1 FROM walkthrough_readings WHERE vehicle_id = $1)) AS known,
           json_build_object(
               'type', 'FeatureCollection',
               'features', COALESCE(
                   (SELECT json_agg(feature ORDER BY part, ts) FROM features), '[]'::json)
           )::text AS body
"""


async def track_geojson(
    pool: asyncpg.Pool,
    vehicle_id: str,
    *,
    since: datetime,
    until: datetime,
    max_points: int = 86_400,
) -> str:
    """The vehicle's track in ``[since, until)`` as GeoJSON FeatureCollection text.

    The first feature is the path as a LineString (present when there are two points or
    more); then one Point feature per reading in time order, with its ``ts`` (UTC),
    ``segment_id``, ``flag`` and pollutant values, at most ``max_points`` of them.
    :class:`NotFoundError` if the vehicle has never been seen.
    """
    row = await pool.fetchrow(_TRACK, vehicle_id, since, until, max_points)
    assert row is not None
    if not row["known"]:
        raise NotFoundError(f"vehicle {vehicle_id!r} does not exist")
    body: str = row["body"]
    return body


# --- segment statistics (the street map) ----------------------------------------------------

# Passes as the tracker defines them (detection/tracker.py, detection/passes.py): a vehicle's
# valid (flag 'N'), snapped readings in time order, split where the segment changes or two
# neighbours are more than the gap apart; a value a sensor fault concerns (fault_pollutants)
# is ignored like an absent one. Passes are found over every such reading of the
# vehicles that drove a selected segment in the window, so that a vehicle leaving the box and
# coming back makes two passes; then each pass's mean of the pollutant (its readings without a
# value ignored; a pass without any value dropped), and per segment the median of those means,
# the passes and the distinct drive days (China Standard Time calendar day of a pass's first
# reading). A pollutant with an analyser lag L registered for the vehicle (docs/domain.md §5.8)
# is re-timed as detection re-times it (detection/lag.py): a reading's value is the one its
# vehicle reported at ts + L, interpolated between the latest valid sample at or before and the
# earliest at or after (flag 'N', the pollutant present and not faulty; one sample exactly there
# is taken as it is), NULL when either is missing or they lie more than the lag gap apart. A lag
# of 0 is no lag, as in detection. The samples are looked up by the primary key, also outside
# the window, so a reading's value does not depend on the window asked for.
_RETIMED_JOINS = """
    LEFT JOIN analyser_lags l_{p}
           ON l_{p}.vehicle_id = w.vehicle_id AND l_{p}.pollutant = '{p}' AND l_{p}.lag_s > 0
    LEFT JOIN LATERAL (
        SELECT x.ts, x.{p}::float8 AS v
        FROM walkthrough_readings x
        WHERE l_{p}.lag_s IS NOT NULL AND x.vehicle_id = w.vehicle_id
          AND x.ts <= w.ts + l_{p}.lag_s * INTERVAL '1 second'
          AND x.ts >= w.ts + (l_{p}.lag_s - ${gap}) * INTERVAL '1 second'
          AND x.flag = 'N' AND x.{p} IS NOT NULL
          AND COALESCE(NOT '{p}' = ANY(x.fault_pollutants), true)
        ORDER BY x.ts DESC LIMIT 1
    ) b_{p} ON true
    LEFT JOIN LATERAL (
        SELECT x.ts, x.{p}::float8 AS v
        FROM walkthrough_readings x
        WHERE l_{p}.lag_s IS NOT NULL AND x.vehicle_id = w.vehicle_id
          AND x.ts >= w.ts + l_{p}.lag_s * INTERVAL '1 second'
          AND x.ts <= w.ts + (l_{p}.lag_s + ${gap}) * INTERVAL '1 second'
          AND x.flag = 'N' AND x.{p} IS NOT NULL
          AND COALESCE(NOT '{p}' = ANY(x.fault_pollutants), true)
        ORDER BY x.ts LIMIT 1
    ) a_{p} ON true"""
# The readings of the passes, each with its values of the pollutants (columns v_<p>): the
# vehicles without a lag for any of them read their own values, the others go through the
# lookups (which start with the pollutant's lag being known), so the former pay nothing for them.
_READINGS = """lagged AS (
    SELECT d.vehicle_id FROM drivers d
    WHERE EXISTS (SELECT 1 FROM analyser_lags l WHERE l.vehicle_id = d.vehicle_id
                  AND l.pollutant IN ({names}) AND l.lag_s > 0)
),
r AS (
    SELECT w.vehicle_id, w.ts, w.segment_id, {own}
    FROM walkthrough_readings w JOIN drivers d ON d.vehicle_id = w.vehicle_id
    WHERE w.ts >= $2 AND w.ts < $3 AND w.flag = 'N' AND w.segment_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM lagged g WHERE g.vehicle_id = w.vehicle_id)
    UNION ALL
    SELECT w.vehicle_id, w.ts, w.segment_id, {retimed}
    FROM walkthrough_readings w JOIN lagged d ON d.vehicle_id = w.vehicle_id{joins}
    WHERE w.ts >= $2 AND w.ts < $3 AND w.flag = 'N' AND w.segment_id IS NOT NULL
)"""
# The planner prices the lag lookups for every reading a lagged vehicle might have, which puts
# even a few thousand readings over jit_above_cost; compiling then takes far longer (about
# 300 ms) than the statement itself.
_NO_JIT = "SET LOCAL jit = off"
_OWN_VALUE = "CASE WHEN '{p}' = ANY(w.fault_pollutants) THEN NULL ELSE w.{p}::float8 END"
_RETIMED_VALUE = """CASE
               WHEN l_{p}.lag_s IS NULL THEN {own}
               WHEN a_{p}.ts = b_{p}.ts THEN b_{p}.v
               WHEN a_{p}.ts - b_{p}.ts <= ${gap} * INTERVAL '1 second' THEN
                   b_{p}.v + (a_{p}.v - b_{p}.v)
                   * extract(epoch FROM w.ts + l_{p}.lag_s * INTERVAL '1 second' - b_{p}.ts)::float8
                   / extract(epoch FROM a_{p}.ts - b_{p}.ts)::float8
           END"""
_SEGMENT_STATS = """
WITH seg AS (
    SELECT id, source, road_ref, seq, name, highway, length_m, coords
    FROM road_segments
    WHERE id > $5
      AND ($6::float8 IS NULL OR (max_lon >= $6 AND min_lon <= $8
                                  AND max_lat >= $7 AND min_lat <= $9))
),
drivers AS (
    SELECT DISTINCT w.vehicle_id
    FROM walkthrough_readings w JOIN seg ON seg.id = w.segment_id
    WHERE w.ts >= $2 AND w.ts < $3 AND w.flag = 'N'
),
{readings},
marked AS (
    SELECT vehicle_id, ts, segment_id, v_{p} AS v,
           CASE WHEN lag(segment_id) OVER w IS DISTINCT FROM segment_id
                  OR ts - lag(ts) OVER w > $4 * INTERVAL '1 second'
                THEN 1 ELSE 0 END AS starts
    FROM r
    WINDOW w AS (PARTITION BY vehicle_id ORDER BY ts)
),
numbered AS (
    SELECT vehicle_id, ts, segment_id, v,
           sum(starts) OVER (PARTITION BY vehicle_id ORDER BY ts) AS pass_no
    FROM marked
),
passes AS (
    SELECT min(segment_id) AS segment_id, avg(v) AS mean, min(ts) AS first_ts
    FROM numbered
    WHERE segment_id IN (SELECT id FROM seg)
    GROUP BY vehicle_id, pass_no
    HAVING count(v) > 0
),
stats AS (
    SELECT segment_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY mean) AS median,
           count(*) AS passes,
           count(DISTINCT ((first_ts AT TIME ZONE 'UTC') + INTERVAL '8 hours')::date)
               AS drive_days
    FROM passes
    GROUP BY segment_id
)
SELECT seg.id, seg.source, seg.road_ref, seg.seq, seg.name, seg.highway, seg.length_m,
       seg.coords, stats.median, stats.passes, stats.drive_days
FROM stats JOIN seg ON seg.id = stats.segment_id
ORDER BY seg.id
LIMIT $1
"""


async def segment_stats(
    pool: asyncpg.Pool,
    pollutant: str,
    *,
    since: datetime,
    until: datetime,
    max_gap_s: float,
    bbox: tuple[float, float, float, float] | None,
    after_id: int,
    limit: int,
    lag_max_gap_s: float = 5.0,
) -> list[dict[str, Any]]:
    """Per road segment with at least one pass of ``pollutant`` in ``[since, until)``: the
    median across drive passes of each pass's mean (``median``), the number of passes and of
    distinct drive days (CST), segments in id order after ``after_id``, at most ``limit``.

    ``bbox`` is ``(min_lon, min_lat, max_lon, max_lat)``: segments whose bounding box meets it.
    Each row has the segment's fields and ``geometry`` (a GeoJSON LineString). A vehicle's
    values of a pollutant with a registered lag are re-timed to where they were sampled
    (docs/domain.md §5.8), never interpolated across samples more than ``lag_max_gap_s``
    apart.
    """
    if pollutant not in POLLUTANTS:
        raise ValidationError(f"unknown pollutant {pollutant!r}")
    box: tuple[float | None, ...] = bbox if bbox is not None else (None, None, None, None)
    sql = _SEGMENT_STATS.format(p=pollutant, readings=_readings_sql((pollutant,), gap=10))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_NO_JIT)
        rows = await conn.fetch(sql, limit, since, until, max_gap_s, after_id, *box, lag_max_gap_s)
    result = []
    for row in rows:
        item = dict(row)
        coords = item.pop("coords")
        coords = json.loads(coords) if isinstance(coords, str) else coords
        item["geometry"] = {"type": "LineString", "coordinates": coords}
        result.append(item)
    return result


# --- the indicative AQI of segments (docs/domain.md §2.5) ---------------------------------------

_AQI_BREAKPOINTS = """
SELECT standard, pollutant, averaging, iaqi, concentration, unit, confirmed
FROM aqi_breakpoints WHERE standard = $1 ORDER BY pollutant, averaging, iaqi
"""


async def aqi_breakpoints(pool: asyncpg.Pool, standard: str) -> list[dict[str, Any]]:
    """The rows of table ``aqi_breakpoints`` of one standard (e.g. ``HJ 633-2026``)."""
    return [dict(r) for r in await pool.fetch(_AQI_BREAKPOINTS, standard)]


# The passes of _SEGMENT_STATS, once for several pollutants: per selected segment and pollutant,
# the median across passes of each pass's mean, the passes with a value and their drive days.
_SEGMENT_MEDIANS = """
WITH seg AS (SELECT DISTINCT unnest($1::bigint[]) AS id),
drivers AS (
    SELECT DISTINCT w.vehicle_id
    FROM walkthrough_readings w JOIN seg ON seg.id = w.segment_id
    WHERE w.ts >= $2 AND w.ts < $3 AND w.flag = 'N'
),
{readings},
marked AS (
    SELECT r.*,
           CASE WHEN lag(segment_id) OVER w IS DISTINCT FROM segment_id
                  OR ts - lag(ts) OVER w > $4 * INTERVAL '1 second'
                THEN 1 ELSE 0 END AS starts
    FROM r
    WINDOW w AS (PARTITION BY vehicle_id ORDER BY ts)
),
numbered AS (
    SELECT marked.*, sum(starts) OVER (PARTITION BY vehicle_id ORDER BY ts) AS pass_no
    FROM marked
),
passes AS (
    SELECT min(segment_id) AS segment_id, min(ts) AS first_ts, {means}
    FROM numbered
    WHERE segment_id IN (SELECT id FROM seg)
    GROUP BY vehicle_id, pass_no
),
long AS (
    SELECT p.segment_id, p.first_ts, x.pollutant, x.mean
    FROM passes p CROSS JOIN LATERAL (VALUES {pairs}) AS x (pollutant, mean)
    WHERE x.mean IS NOT NULL
)
SELECT segment_id, pollutant,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY mean) AS median,
       count(*) AS passes,
       count(DISTINCT ((first_ts AT TIME ZONE 'UTC') + INTERVAL '8 hours')::date) AS drive_days
FROM long
GROUP BY segment_id, pollutant
"""


def _segment_medians_sql(pollutants: tuple[str, ...]) -> str:
    means = ", ".join(f"avg(v_{p}) AS m_{p}" for p in pollutants)
    pairs = ", ".join(f"('{p}', p.m_{p})" for p in pollutants)
    return _SEGMENT_MEDIANS.format(
        readings=_readings_sql(pollutants, gap=5), means=means, pairs=pairs
    )


def _readings_sql(pollutants: tuple[str, ...], *, gap: int) -> str:
    """:data:`_READINGS` for ``pollutants`` (known names), the lag gap parameter ``$gap``."""
    return _READINGS.format(
        names=", ".join(f"'{p}'" for p in pollutants),
        own=", ".join(f"{_OWN_VALUE.format(p=p)} AS v_{p}" for p in pollutants),
        retimed=", ".join(
            f"{_RETIMED_VALUE.format(p=p, gap=gap, own=_OWN_VALUE.format(p=p))} AS v_{p}"
            for p in pollutants
        ),
        joins="".join(_RETIMED_JOINS.format(p=p, gap=gap) for p in pollutants),
    )


async def segment_medians(
    pool: asyncpg.Pool,
    segment_ids: list[int],
    pollutants: tuple[str, ...],
    *,
    since: datetime,
    until: datetime,
    max_gap_s: float,
    lag_max_gap_s: float = 5.0,
) -> list[dict[str, Any]]:
    """Per segment of ``segment_ids`` and pollutant of ``pollutants`` with at least one pass in
    ``[since, until)``: ``median`` across passes of each pass's mean, ``passes`` and
    ``drive_days``, found and re-timed exactly as :func:`segment_stats` does."""
    unknown = set(pollutants) - set(POLLUTANTS)
    if unknown:
        raise ValidationError(f"unknown pollutants {sorted(unknown)}")
    if not segment_ids or not pollutants:
        return []
    sql = _segment_medians_sql(pollutants)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_NO_JIT)
        rows = await conn.fetch(sql, segment_ids, since, until, max_gap_s, lag_max_gap_s)
    return [dict(r) for r in rows]


# --- extra channels (docs/domain.md §5.6) -------------------------------------------------------

_EXTRA_SERIES = """
SELECT ts, lat, lon, (extra -> $2)::text AS value, extra -> 'units' ->> $2 AS unit
FROM walkthrough_readings
WHERE vehicle_id = $1 AND ts >= $3 AND ts < $4 AND ($5::timestamptz IS NULL OR ts > $5)
  AND extra ? $2
ORDER BY ts
LIMIT $6
"""


async def extra_series(
    pool: asyncpg.Pool,
    vehicle_id: str,
    channel: str,
    *,
    since: datetime,
    until: datetime,
    after: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """One vehicle's readings in ``[since, until)`` (after ``after``) that carry the extra
    field ``channel``, oldest first, at most ``limit``: ``ts``, ``lat``, ``lon`` and the
    field's ``value`` as sent (any JSON value), with the ``unit`` the reading declared for it
    (None: none)."""
    rows = await pool.fetch(_EXTRA_SERIES, vehicle_id, channel, since, until, after, limit)
    return [
        {
            "ts": r["ts"],
            "lat": r["lat"],
            "lon": r["lon"],
            "value": json.loads(r["value"]),
            "unit": r["unit"],
        }
        for r in rows
    ]


# --- data quality -----------------------------------------------------------------------------

_DATA_QUALITY = """
SELECT vehicle_id,
       ((ts AT TIME ZONE 'UTC') + INTERVAL '8 hours')::date AS day,
       count(*) AS readings,
       count(*) FILTER (WHERE flag <> 'N') AS flagged,
       count(*) FILTER (WHERE fault IS NOT NULL AND fault <> 'calibration') AS faulty,
       count(*) FILTER (WHERE fault = 'flatline') AS flatline,
       count(*) FILTER (WHERE fault = 'range_limit') AS range_limit,
       count(*) FILTER (WHERE fault = 'step') AS step,
       count(*) FILTER (WHERE fault = 'calibration') AS calibration
FROM walkthrough_readings
WHERE ts >= $1 AND ts < $2 AND ($3::text IS NULL OR vehicle_id = $3)
GROUP BY 1, 2
ORDER BY day DESC, vehicle_id
LIMIT $4
"""


async def data_quality(
    pool: asyncpg.Pool,
    *,
    since: datetime,
    until: datetime,
    vehicle_id: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Per vehicle and China Standard Time day with readings in ``[since, until)``: the stored
    readings, those flagged other than ``N``, those with a sensor fault, the count of each
    fault, and those with a channel under calibration; newest day first, at most ``limit``
    rows."""
    rows = await pool.fetch(_DATA_QUALITY, since, until, vehicle_id, limit)
    return [dict(r) for r in rows]
