"""The SQL of the walk-through detector (docs/adr/0011): which vehicles a tick looks at, their
committed rows read back in bulk (binary COPY parsed with numpy: no Python object per value),
and what a tick writes: sensor faults onto the (rare) faulty rows and the vehicles' cursors.
Every statement runs inside the detector's fenced transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np
import numpy.typing as npt

from telemetry.clock import PG_EPOCH_US
from telemetry.columns import IntArray, ObjectArray
from telemetry.kinds.walkthrough.detection.faults import FAULTS
from telemetry.kinds.walkthrough.detection.ordered import NO_CURSOR, Cursors, Plan, StoredRows
from telemetry.kinds.walkthrough.detection.tracker import PassStats
from telemetry.kinds.walkthrough.record import POLLUTANTS
from telemetry.store.partitions import partition_sql
from telemetry.store.staging import binary_row, parse_binary_copy

__all__ = ["Touched", "read_rows", "touched_vehicles", "write_cursors", "write_faults"]


def _ts(param: str) -> str:
    return f"(TIMESTAMPTZ 'epoch' + ({param}) * INTERVAL '1 microsecond')"


# Vehicles of the held partitions with rows that arrived in (since, horizon], and those that
# went quiet in it: their newest row arrived in (since - gap, horizon - gap] (any time after
# since - gap, when ``final``). $5, $6 bound the scan of the arrival index; it is materialized
# so that the planner never walks a vehicle's whole history by the primary key instead, and
# grouped by vehicle first so that the partition hash runs once per vehicle (a vehicle looked
# at without new rows is judged again to the same result). The same bounds less the gap take
# the quiet candidates from the index on ``vehicles.last_received_at`` before any hash, rather
# than a scan and a hash of the whole fleet every tick to find the few that went quiet. A
# vehicle with an analyser lag ($9, $10: vehicles and their largest lag, s) is left for a
# later tick while its new rows span less than twice its lag past its cursor, so that its
# held-back rows (docs/domain.md §5.8) are read about twice, not once per tick; never when it
# has a row behind its cursor in the window (late rows are read in their window only), went
# quiet, or the tick is final.
_TOUCHED = f"""
WITH held AS (
    SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS h(part, since_us, horizon_us)
),
arrived AS MATERIALIZED (
    SELECT r.vehicle_id, min(r.received_at) AS oldest, max(r.received_at) AS newest,
           min(r.ts) AS first_ts, max(r.ts) AS last_ts
    FROM walkthrough_readings r
    WHERE r.received_at > {_ts("$5")} AND r.received_at <= {_ts("$6")}
    GROUP BY r.vehicle_id
),
fresh AS (
    SELECT a.vehicle_id
    FROM arrived a
    JOIN held h ON h.part = {partition_sql("a.vehicle_id", "$4")}
    WHERE a.newest > {_ts("h.since_us")} AND a.oldest <= {_ts("h.horizon_us")}
),
candidates AS MATERIALIZED (
    SELECT v.vehicle_id, v.last_received_at
    FROM vehicles v
    WHERE v.kind = 'walkthrough'
      AND v.last_received_at > {_ts("$5 - $7")}
      AND v.last_received_at <= CASE WHEN $8 THEN TIMESTAMPTZ 'infinity'
                                     ELSE {_ts("$6 - $7")} END
),
quiet AS (
    SELECT v.vehicle_id
    FROM candidates v
    JOIN held h ON h.part = {partition_sql("v.vehicle_id", "$4")}
    WHERE v.last_received_at > {_ts("h.since_us - $7")}
      AND (v.last_received_at <= {_ts("h.horizon_us - $7")} OR $8)
)
SELECT t.vehicle_id, {partition_sql("t.vehicle_id", "$4")} AS part,
       c.judged_us, c.flat_since_us, c.open_segment_id, c.open_first_us, c.open_last_us,
       c.open_received_us, c.open_readings, c.open_n, c.open_total, c.open_peak
FROM (SELECT vehicle_id FROM fresh UNION SELECT vehicle_id FROM quiet) AS t
LEFT JOIN walkthrough_detect_cursors c ON c.vehicle_id = t.vehicle_id
LEFT JOIN unnest($9::text[], $10::float8[]) AS l(vehicle_id, lag_max_s)
    ON l.vehicle_id = t.vehicle_id
LEFT JOIN arrived a ON a.vehicle_id = t.vehicle_id
WHERE l.lag_max_s IS NULL OR $8 OR c.judged_us IS NULL OR a.first_ts IS NULL
   OR t.vehicle_id IN (SELECT vehicle_id FROM quiet)
   OR a.first_ts <= {_ts("c.judged_us")}
   OR a.last_ts >= {_ts("c.judged_us")} + l.lag_max_s * INTERVAL '2 seconds'
"""


@dataclass(frozen=True, slots=True)
class Touched:
    """The vehicles one tick looks at, sorted, with their partition's window and cursor."""

    vehicle_id: ObjectArray
    since_us: IntArray
    horizon_us: IntArray
    cursors: Cursors

    def __len__(self) -> int:
        return int(self.vehicle_id.shape[0])


async def touched_vehicles(
    conn: asyncpg.Connection,
    partitions: Sequence[int],
    since_us: Sequence[int],
    horizon_us: Sequence[int],
    *,
    partition_count: int,
    gap_us: int,
    final: bool,
    lag_max_s: Mapping[str, float] | None = None,
) -> Touched:
    """The vehicles of ``partitions`` with rows that arrived in their partition's
    (since, horizon], and those that went quiet in it (or may still have a pass open, when
    ``final``), with their cursors. ``lag_max_s``: the largest analyser lag of the vehicles
    that have one; such a vehicle waits until it has enough new rows (see ``_TOUCHED``)."""
    p = len(POLLUTANTS)
    lagged = sorted((v, lag) for v, lag in (lag_max_s or {}).items() if lag > 0)
    records = await conn.fetch(
        _TOUCHED,
        list(partitions),
        list(since_us),
        list(horizon_us),
        partition_count,
        min(since_us),
        max(horizon_us),
        gap_us,
        final,
        [v for v, _ in lagged],
        [lag for _, lag in lagged],
    )
    ids = np.array([r["vehicle_id"] for r in records], dtype=str)
    order = np.argsort(ids, kind="stable")  # numpy's order, which the detection searches by
    records = [records[i] for i in order.tolist()]
    n = len(records)
    window = {q: i for i, q in enumerate(partitions)}
    slot = np.array([window[int(r["part"])] for r in records], dtype=np.intp)
    judged = np.array(
        [NO_CURSOR if r["judged_us"] is None else r["judged_us"] for r in records], dtype=np.int64
    )
    flat = np.full((n, p), -1, dtype=np.int64)
    open_at: list[int] = []
    for i, r in enumerate(records):
        known = r["flat_since_us"]
        if known is not None and len(known) == p:
            flat[i] = known
        if r["open_segment_id"] is not None:
            open_at.append(i)
    opened = [records[i] for i in open_at]
    open_row = np.full(n, -1, dtype=np.int64)
    open_row[open_at] = np.arange(len(open_at))

    def ints(name: str) -> IntArray:
        return np.array([r[f"open_{name}"] for r in opened], dtype=np.int64)

    def floats(name: str) -> npt.NDArray[np.float64]:
        return np.array([r[f"open_{name}"] for r in opened], dtype=np.float64).reshape(-1, p)

    open_passes = PassStats(
        vehicle_id=ids[order][open_at] if open_at else np.empty(0, dtype=str),
        segment_id=ints("segment_id"),
        first_us=ints("first_us"),
        last_us=ints("last_us"),
        received_us=ints("received_us"),
        readings=ints("readings"),
        n=floats("n"),
        total=floats("total"),
        peak=floats("peak"),
    )
    vehicle_id = ids[order].astype(object)
    return Touched(
        vehicle_id=vehicle_id,
        since_us=np.asarray(since_us, dtype=np.int64)[slot],
        horizon_us=np.asarray(horizon_us, dtype=np.int64)[slot],
        cursors=Cursors(
            vehicle_id=vehicle_id,
            judged_us=judged,
            flat_since_us=flat,
            open_row=open_row,
            open=open_passes,
        ),
    )


_FAULT_CODE = (
    "CASE WHEN r.fault IS NULL THEN 0 "
    + " ".join(f"WHEN r.fault = '{code}' THEN {k}" for k, code in enumerate(FAULTS, start=1))
    + " ELSE -1 END"
)
_FAULT_BITS = (
    "CASE WHEN r.fault_pollutants IS NULL THEN 0 ELSE (SELECT coalesce(sum("
    "1::bigint << (array_position($7::text[], q) - 1)), 0)::bigint "
    "FROM unnest(r.fault_pollutants) AS q WHERE q = ANY($7::text[])) END"
)
_COLUMNS = (
    "r.ts AS ts_us, r.received_at AS received_us, "
    "r.lat, r.lon, r.flag = 'N' AS flag_ok, coalesce(r.segment_id, -1) AS segment_id, "
    + ", ".join(f"coalesce(r.{p}, 'NaN') AS {p}" for p in POLLUTANTS)
    + f", ({_FAULT_CODE})::int AS fault, ({_FAULT_BITS}) AS fault_bits"
)
_FIELDS = (
    "no",
    "ts_us",
    "received_us",
    "role",
    "fresh",
    "lat",
    "lon",
    "flag_ok",
    "segment_id",
    *POLLUTANTS,
    "fault",
    "fault_bits",
)

# Each vehicle's rows after its cursor that arrived by the horizon (role 0; for a vehicle
# without a cursor, the rows that arrived in the window), its rows behind the cursor that
# arrived in the window (late, role 1) and its row at the cursor (the newest consumed: context,
# role 2). The rows after the cursor and the context row come through the primary key
# (vehicle_id, ts), one short range per vehicle (OFFSET 0 keeps the planner from turning the
# LATERAL into a join over the whole table). The window's arrivals are matched to the vehicles
# on the arrival index's columns before a row is fetched: at a steady 1 Hz nearly none of them
# is late or a new vehicle's, and fetching each first cost a primary-key lookup apiece.
_ROWS = f"""
WITH v AS (
    SELECT x.no, x.vehicle_id, x.judged_us, {_ts("x.judged_us")} AS judged_at,
           {_ts("x.since_us")} AS since_at, {_ts("x.horizon_us")} AS horizon_at
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
        WITH ORDINALITY AS x(vehicle_id, judged_us, since_us, horizon_us, no)
),
arrived AS MATERIALIZED (
    SELECT r.vehicle_id, r.ts, r.received_at FROM walkthrough_readings r
    WHERE r.received_at > {_ts("$5")} AND r.received_at <= {_ts("$6")}
),
fresh_keys AS MATERIALIZED (
    SELECT v.no, a.vehicle_id, a.ts
    FROM arrived a
    JOIN v ON v.vehicle_id = a.vehicle_id
    WHERE a.received_at > v.since_at AND a.received_at <= v.horizon_at
      AND (v.judged_us IS NULL OR a.ts <= v.judged_at)
),
fresh AS (
    SELECT k.no, r.*
    FROM fresh_keys k
    JOIN walkthrough_readings r ON r.vehicle_id = k.vehicle_id AND r.ts = k.ts
)
SELECT (x.no - 1)::int AS no, x.ts_us, x.received_us, x.role, x.fresh, x.lat, x.lon,
       x.flag_ok, x.segment_id, {", ".join(f"x.{p}" for p in POLLUTANTS)}, x.fault,
       x.fault_bits
FROM (
    SELECT r.no, CASE WHEN v.judged_us IS NULL THEN 0 ELSE 1 END AS role, true AS fresh,
           {_COLUMNS}
    FROM fresh r JOIN v ON v.no = r.no
    UNION ALL
    SELECT v.no, 0, r.received_at > v.since_at, {_COLUMNS}
    FROM v JOIN LATERAL (
        SELECT * FROM walkthrough_readings w
        WHERE w.vehicle_id = v.vehicle_id AND w.ts > v.judged_at
          AND w.received_at <= v.horizon_at
        OFFSET 0
    ) r ON true
    WHERE v.judged_us IS NOT NULL
    UNION ALL
    SELECT v.no, 2, false, {_COLUMNS}
    FROM v JOIN LATERAL (
        SELECT * FROM walkthrough_readings w
        WHERE w.vehicle_id = v.vehicle_id AND w.ts <= v.judged_at
        ORDER BY w.ts DESC LIMIT 1
    ) r ON true
    WHERE v.judged_us IS NOT NULL
) AS x
"""
_N = len(_FIELDS)
_TYPES = {
    "no": ">i4",
    "role": ">i4",
    "fault": ">i4",
    "fresh": "?",
    "flag_ok": "?",
    "ts_us": ">i8",
    "received_us": ">i8",
    "segment_id": ">i8",
    "fault_bits": ">i8",
    **{p: ">f4" for p in POLLUTANTS},
}
# Every field here is fixed-width and never NULL, so rows of the binary COPY have one layout.
# Timestamps travel as their binary form (µs since 2000-01-01) and pollutants as stored
# (real), so the server converts nothing.
_ROW = binary_row([(f, _TYPES.get(f, ">f8")) for f in _FIELDS])


async def read_rows(conn: asyncpg.Connection, touched: Touched) -> StoredRows:
    """The touched vehicles' rows for :func:`plan_detection`."""
    chunks: list[bytes] = []

    async def collect(chunk: bytes) -> None:
        chunks.append(bytes(chunk))

    judged = touched.cursors.judged_us
    await conn.copy_from_query(
        _ROWS,
        touched.vehicle_id.tolist(),
        [None if j == NO_CURSOR else j for j in judged.tolist()],
        touched.since_us.tolist(),
        touched.horizon_us.tolist(),
        int(touched.since_us.min()),
        int(touched.horizon_us.max()),
        list(POLLUTANTS),
        output=collect,
        format="binary",
    )
    raw = parse_binary_copy(b"".join(chunks), _ROW)
    return StoredRows(
        vehicle=raw["no"].astype(np.int64),
        ts_us=raw["ts_us"].astype(np.int64) + PG_EPOCH_US,
        received_us=raw["received_us"].astype(np.int64) + PG_EPOCH_US,
        role=raw["role"].astype(np.int64),
        fresh=raw["fresh"].astype(bool),
        lat=raw["lat"].astype(np.float64),
        lon=raw["lon"].astype(np.float64),
        flag_ok=raw["flag_ok"].astype(bool),
        segment_id=raw["segment_id"].astype(np.int64),
        values=np.stack([raw[p].astype(np.float64) for p in POLLUTANTS], axis=1).reshape(
            -1, len(POLLUTANTS)
        ),
        fault=raw["fault"].astype(np.int64),
        fault_bits=raw["fault_bits"].astype(np.int64),
    )


_FAULTS = f"""
UPDATE walkthrough_readings AS r
SET fault = NULLIF(x.code, ''), fault_pollutants = string_to_array(NULLIF(x.pollutants, ''), ',')
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
     AS x(vehicle_id, ts_us, code, pollutants)
WHERE r.vehicle_id = x.vehicle_id AND r.ts = {_ts("x.ts_us")}
"""


async def write_faults(
    conn: asyncpg.Connection,
    vehicle_id: ObjectArray,
    ts_us: IntArray,
    code: ObjectArray,
    pollutants: ObjectArray,
) -> None:
    """Set the sensor fault (``''``: none) of the rows at (vehicle_id, ts_us)."""
    if vehicle_id.shape[0] == 0:
        return
    await conn.execute(
        _FAULTS, vehicle_id.tolist(), ts_us.tolist(), code.tolist(), pollutants.tolist()
    )


_CURSORS = """
INSERT INTO walkthrough_detect_cursors AS c (
    vehicle_id, judged_us, flat_since_us, open_segment_id, open_first_us, open_last_us,
    open_received_us, open_readings, open_n, open_total, open_peak, updated_at)
SELECT x.vehicle_id, x.judged_us, ($3::bigint[])[(x.i - 1) * {p} + 1 : x.i * {p}],
       NULLIF(x.seg, -1),
       CASE WHEN x.seg <> -1 THEN x.first_us END, CASE WHEN x.seg <> -1 THEN x.last_us END,
       CASE WHEN x.seg <> -1 THEN x.received_us END, CASE WHEN x.seg <> -1 THEN x.readings END,
       CASE WHEN x.seg <> -1 THEN ($9::float8[])[(x.i - 1) * {p} + 1 : x.i * {p}] END,
       CASE WHEN x.seg <> -1 THEN ($10::float8[])[(x.i - 1) * {p} + 1 : x.i * {p}] END,
       CASE WHEN x.seg <> -1 THEN ($11::float8[])[(x.i - 1) * {p} + 1 : x.i * {p}] END, now()
FROM unnest($1::text[], $2::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
            $7::bigint[], $8::bigint[]) WITH ORDINALITY
     AS x(vehicle_id, judged_us, seg, first_us, last_us, received_us, readings, i)
ORDER BY x.vehicle_id
ON CONFLICT (vehicle_id) DO UPDATE SET
    judged_us = EXCLUDED.judged_us, flat_since_us = EXCLUDED.flat_since_us,
    open_segment_id = EXCLUDED.open_segment_id, open_first_us = EXCLUDED.open_first_us,
    open_last_us = EXCLUDED.open_last_us, open_received_us = EXCLUDED.open_received_us,
    open_readings = EXCLUDED.open_readings, open_n = EXCLUDED.open_n,
    open_total = EXCLUDED.open_total, open_peak = EXCLUDED.open_peak, updated_at = now()
""".replace("{p}", str(len(POLLUTANTS)))


async def write_cursors(conn: asyncpg.Connection, vehicle_id: ObjectArray, plan: Plan) -> None:
    """Store the cursors of ``vehicle_id`` (the tick's vehicles) as ``plan`` moves them;
    vehicles without a cursor (``NO_CURSOR``) are skipped."""
    keep = np.flatnonzero(plan.judged_us != NO_CURSOR)
    if keep.shape[0] == 0:
        return
    n, p = keep.shape[0], len(POLLUTANTS)
    row = plan.open_row[keep]
    has = row >= 0
    at = row[has]
    o = plan.open

    def column(values: IntArray) -> list[int]:
        out = np.full(n, -1, dtype=np.int64)
        out[has] = values[at]
        return out.tolist()

    empty = np.zeros((n, p))

    # Tables go as one flat array each, a row of len(POLLUTANTS) per vehicle (sliced in SQL):
    # asyncpg encodes a list of numbers in C, where text literals cost a str() per value.
    def table(values: npt.NDArray[np.float64]) -> list[float]:
        out = empty.copy()
        out[has] = values[at]
        flat: list[float] = out.ravel().tolist()
        return flat

    await conn.execute(
        _CURSORS,
        vehicle_id[keep].tolist(),
        plan.judged_us[keep].tolist(),
        np.ascontiguousarray(plan.flat_since_us[keep], dtype=np.int64).ravel().tolist(),
        column(o.segment_id),
        column(o.first_us),
        column(o.last_us),
        column(o.received_us),
        column(o.readings),
        table(o.n),
        table(o.total),
        table(o.peak),
    )
