"""Live vehicles' last positions, read from table ``vehicles`` for the event stream.

Ingest moves each vehicle's last state forward in every batch
(:func:`telemetry.store.vehicles.upsert_vehicles`); the stream reads the vehicles heard from
recently, once per tick per API process, by the index on ``last_received_at``
(migrations/0015_webhooks.sql).
"""

from __future__ import annotations

import asyncpg

__all__ = ["live_positions"]

_LIVE = """
    SELECT vehicle_id, kind, last_lat AS lat, last_lon AS lon, last_ts AS ts
    FROM vehicles
    WHERE last_received_at >= now() - make_interval(secs => $1)
"""


async def live_positions(pool: asyncpg.Pool, *, online_s: float) -> list[asyncpg.Record]:
    """Each vehicle heard from within ``online_s`` seconds: ``vehicle_id``, ``kind``, ``lat``,
    ``lon`` and the measurement time ``ts`` of that position. (Records as they come: with
    thousands of vehicles a tick, copying them into dicts would double the cost.)"""
    rows: list[asyncpg.Record] = await pool.fetch(_LIVE, float(online_s))
    return rows
