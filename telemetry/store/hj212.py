"""HJ 212 data that are not readings: interval data (2051/2061/2031) and, per analyser, how many
packets were accepted thanks to each tolerated deviation. Written inside the ingest batch's
transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

__all__ = ["IntervalRow", "count_deviations", "insert_intervals"]

#: (vehicle_id, mn, cn, begin_us, factor, min, avg, max, cou, flag, unit, received_us)
IntervalRow = tuple[
    str,
    str,
    str,
    int,
    str,
    float | None,
    float | None,
    float | None,
    float | None,
    str | None,
    str | None,
    int,
]

_INSERT_INTERVAL = """
    INSERT INTO hj212_interval_data (vehicle_id, mn, cn, begin_time, factor,
        min_value, avg_value, max_value, cou_value, flag, unit, received_at)
    VALUES ($1, $2, $3, TIMESTAMPTZ 'epoch' + $4::bigint * INTERVAL '1 microsecond',
        $5, $6, $7, $8, $9, $10, $11,
        TIMESTAMPTZ 'epoch' + $12::bigint * INTERVAL '1 microsecond')
    ON CONFLICT DO NOTHING
"""

_COUNT_DEVIATION = """
    INSERT INTO hj212_deviations (mn, deviation, vehicle_id, packets)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (mn, deviation) DO UPDATE
    SET packets = hj212_deviations.packets + EXCLUDED.packets,
        vehicle_id = EXCLUDED.vehicle_id, last_seen = now()
"""


async def insert_intervals(conn: asyncpg.Connection, rows: Sequence[IntervalRow]) -> None:
    """Store interval data; a redelivered packet changes nothing."""
    if rows:
        await conn.executemany(_INSERT_INTERVAL, rows)


async def count_deviations(
    conn: asyncpg.Connection, counts: Mapping[tuple[str, str, str], int]
) -> None:
    """Add ``{(mn, deviation, vehicle_id): packets}`` to the per-analyser deviation counts."""
    if counts:
        await conn.executemany(
            _COUNT_DEVIATION, [(mn, d, v, n) for (mn, d, v), n in counts.items()]
        )
