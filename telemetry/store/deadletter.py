"""The dead-letter table: everything the ingest path could not accept, with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["DeadLetter", "insert_dead_letters", "list_dead_letters"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message, or one element of an array payload, that cannot be accepted."""

    received_us: int
    topic: str
    kind: str | None
    vehicle_id: str | None
    reason: str
    detail: str
    item_index: int | None
    payload: bytes


_COLUMNS = (
    "received_at",
    "topic",
    "kind",
    "vehicle_id",
    "reason",
    "detail",
    "item_index",
    "payload",
)


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a detail quoting a payload may. The raw payload keeps
    # the original bytes (bytea), so nothing is lost by escaping it here.
    return value.replace("\x00", "\\x00") if value and "\x00" in value else value


async def insert_dead_letters(conn: asyncpg.Connection, letters: Sequence[DeadLetter]) -> None:
    """Store dead letters (inside the caller's transaction)."""
    if not letters:
        return
    await conn.executemany(
        f"""
        INSERT INTO dead_letters ({", ".join(_COLUMNS)})
        VALUES (TIMESTAMPTZ 'epoch' + $1::bigint * INTERVAL '1 microsecond',
                $2, $3, $4, $5, $6, $7, $8)
        """,
        [
            (
                d.received_us,
                _text(d.topic),
                d.kind,
                _text(d.vehicle_id),
                d.reason,
                _text(d.detail),
                d.item_index,
                d.payload,
            )
            for d in letters
        ],
    )


async def list_dead_letters(
    pool: asyncpg.Pool,
    *,
    reason: str | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first; ``before_id`` pages backwards. The payload is decoded as UTF-8 where it
    can be (with replacement characters where it cannot)."""
    rows = await pool.fetch(
        """
        SELECT id, received_at, topic, kind, vehicle_id, reason, detail, item_index, payload
        FROM dead_letters
        WHERE ($1::text IS NULL OR reason = $1)
          AND ($2::text IS NULL OR kind = $2)
          AND ($3::bigint IS NULL OR id < $3)
        ORDER BY id DESC
        LIMIT $4
        """,
        reason,
        kind,
        before_id,
        limit,
    )
    out = []
    for r in rows:
        item = dict(r)
        item["payload"] = bytes(r["payload"]).decode("utf-8", errors="replace")
        out.append(item)
    return out
