"""Detection partitions held on leases, and the ingest workers' low watermarks
(docs/adr/0011): the SQL the ingest worker's detector runs around each kind's detection.

A lease is a row of ``detection_leases``: a holder and an expiry. A detector renews the
leases it holds inside every detection transaction (:func:`fence`): the UPDATE locks the rows
until the transaction ends, and claims skip locked rows, so what a tick writes commits only
while its leases are still its own. Claims take free or expired partitions up to an even share
of the live workers (:func:`share`), and a worker above its share releases the excess, so
adding a worker rebalances.
"""

from __future__ import annotations

import math

import asyncpg

__all__ = [
    "advance_partitions",
    "claim_partitions",
    "ensure_partitions",
    "fence",
    "live_watermarks",
    "publish_watermark",
    "release_partitions",
    "remove_watermark",
    "share",
]


def share(partitions: int, live_workers: int) -> int:
    """The most partitions one of ``live_workers`` should hold: an even spread, rounded up
    so that every partition has a holder."""
    return math.ceil(partitions / max(live_workers, 1))


_PUBLISH = """
INSERT INTO ingest_watermarks (worker_id, low_watermark_us, heartbeat_at)
VALUES ($1, $2, now())
ON CONFLICT (worker_id) DO UPDATE
SET low_watermark_us = EXCLUDED.low_watermark_us, heartbeat_at = now()
"""


async def publish_watermark(conn: asyncpg.Connection, worker_id: str, low_us: int) -> None:
    """Say that every message ``worker_id`` received before ``low_us`` (its clock) is
    committed."""
    await conn.execute(_PUBLISH, worker_id, low_us)


async def remove_watermark(conn: asyncpg.Connection, worker_id: str) -> None:
    await conn.execute("DELETE FROM ingest_watermarks WHERE worker_id = $1", worker_id)


_LIVE = """
SELECT min(low_watermark_us) AS low_us, count(*) AS live,
       count(*) FILTER (WHERE worker_id <> $2) AS others
FROM ingest_watermarks
WHERE heartbeat_at > now() - $1 * INTERVAL '1 second'
"""


async def live_watermarks(
    conn: asyncpg.Connection, worker_id: str, *, dead_after_s: float
) -> tuple[int | None, int, int]:
    """(the lowest watermark of the live workers or None, how many are live, how many of
    them are not ``worker_id``). A worker is live while its heartbeat is younger than
    ``dead_after_s`` by the database's clock."""
    row = await conn.fetchrow(_LIVE, dead_after_s, worker_id)
    assert row is not None
    return row["low_us"], int(row["live"]), int(row["others"])


_ENSURE = """
INSERT INTO detection_leases (partition, judged_through_us)
SELECT g, (SELECT coalesce(min(judged_through_us),
                           (extract(epoch FROM clock_timestamp()) * 1e6)::bigint)
           FROM detection_leases)
FROM generate_series(0, $1 - 1) AS g
ON CONFLICT (partition) DO NOTHING
"""


async def ensure_partitions(conn: asyncpg.Connection, count: int) -> None:
    """Rows for partitions ``0 … count - 1`` (a larger count than the migration's 64 starts
    its new partitions where the oldest one stands)."""
    await conn.execute(_ENSURE, count)


_CLAIM = """
WITH free AS (
    SELECT partition FROM detection_leases
    WHERE partition < $2 AND (holder IS NULL OR expires_at < now())
    ORDER BY partition
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE detection_leases AS l
SET holder = $1, expires_at = now() + $3 * INTERVAL '1 second'
FROM free
WHERE l.partition = free.partition
RETURNING l.partition
"""

_HELD = """
SELECT partition FROM detection_leases
WHERE holder = $1 AND expires_at > now()
ORDER BY partition
"""


async def claim_partitions(
    conn: asyncpg.Connection, worker_id: str, *, count: int, lease_s: float, limit: int
) -> list[int]:
    """Claim up to ``limit`` free or expired partitions below ``count``; the partitions
    ``worker_id`` holds afterwards."""
    if limit > 0:
        await conn.execute(_CLAIM, worker_id, count, lease_s, limit)
    return [int(r["partition"]) for r in await conn.fetch(_HELD, worker_id)]


async def release_partitions(
    conn: asyncpg.Connection, worker_id: str, partitions: list[int] | None = None
) -> None:
    """Give up ``partitions`` (all of ``worker_id``'s when None) for others to claim now."""
    await conn.execute(
        "UPDATE detection_leases SET holder = NULL, expires_at = '-infinity'"
        " WHERE holder = $1 AND ($2::int[] IS NULL OR partition = ANY($2::int[]))",
        worker_id,
        partitions,
    )


_FENCE = """
UPDATE detection_leases
SET expires_at = now() + $3 * INTERVAL '1 second'
WHERE holder = $1 AND expires_at > now() AND partition < $2
RETURNING partition, judged_through_us
"""


async def fence(
    conn: asyncpg.Connection, worker_id: str, *, count: int, lease_s: float
) -> tuple[list[int], list[int]]:
    """Inside the caller's transaction: renew and lock the leases ``worker_id`` still holds;
    (their partitions, how far each has been judged by arrival time), in partition order.
    Nobody can claim them before the transaction ends."""
    rows = sorted(await conn.fetch(_FENCE, worker_id, count, lease_s), key=lambda r: r[0])
    return [int(r[0]) for r in rows], [int(r[1]) for r in rows]


async def advance_partitions(
    conn: asyncpg.Connection, partitions: list[int], through_us: list[int]
) -> None:
    """Inside the fenced transaction: the partitions have been judged through ``through_us``
    (arrival time); never moves back."""
    await conn.execute(
        "UPDATE detection_leases AS l SET judged_through_us = greatest(l.judged_through_us, x.t)"
        " FROM unnest($1::int[], $2::bigint[]) AS x(p, t) WHERE l.partition = x.p",
        partitions,
        through_us,
    )
