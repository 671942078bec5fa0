"""Table ``vehicle_declared_units`` (migration 0017): the units vehicles declared at
registration, read by the ingest pipelines and the readings API (docs/domain.md §5.6).
Registering them is ``telemetry.broker.vehicles``'s."""

from __future__ import annotations

import asyncpg

__all__ = ["load_vehicle_units"]

_LOAD = """
SELECT vehicle_id, channel, unit FROM vehicle_declared_units
WHERE ($1::text IS NULL OR vehicle_id = $1)
ORDER BY vehicle_id, channel
"""


async def load_vehicle_units(
    conn: asyncpg.Pool | asyncpg.Connection, vehicle_id: str | None = None
) -> dict[str, dict[str, str]]:
    """{vehicle id: {channel: unit}} of every vehicle with a declaration (or of one)."""
    units: dict[str, dict[str, str]] = {}
    for row in await conn.fetch(_LOAD, vehicle_id):
        units.setdefault(row["vehicle_id"], {})[row["channel"]] = row["unit"]
    return units
