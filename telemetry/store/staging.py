"""The bulk, idempotent write every kind's store uses: COPY into a per-connection staging
table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``, returning which rows were new."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

__all__ = ["copy_and_insert", "first_of_each_key", "json_text"]

_encoder = msgspec.json.Encoder()


def json_text(value: object) -> str | None:
    """A jsonb value for COPY: asyncpg's binary COPY has no jsonb encoder, so extras travel
    as text and the insert casts them."""
    return None if value is None else _encoder.encode(value).decode()


def first_of_each_key(*keys: npt.NDArray[np.generic]) -> npt.NDArray[np.intp]:
    """Sorted positions of the first occurrence of every key tuple (arrays aligned, most
    significant first): a message delivered twice in one batch must not reach detection
    twice, and one INSERT must not meet the same key twice."""
    columns = [k.astype(str) if k.dtype == object else k for k in keys]
    order = np.lexsort(columns[::-1])
    change = np.zeros(len(order), dtype=bool)
    change[0:1] = True
    for column in columns:
        ordered = column[order]
        change[1:] |= ordered[1:] != ordered[:-1]
    return np.sort(order[change])


async def copy_and_insert(
    conn: asyncpg.Connection,
    *,
    create_staging: str,
    staging: str,
    columns: Sequence[str],
    values: Sequence[list[object]],
    insert: str,
) -> npt.NDArray[np.intp]:
    """COPY ``values`` (one list per column, the first being ``row_no``) into ``staging``, run
    ``insert`` (which must return the ``row_no`` of every row it inserted), and return those
    row numbers sorted. Runs inside the caller's transaction; the staging table is a temporary
    table created on first use (``create_staging``) and emptied at commit."""
    await conn.execute(create_staging)
    await conn.copy_records_to_table(staging, records=zip(*values, strict=True), columns=columns)
    rows = await conn.fetch(insert)
    new = np.fromiter((r[0] for r in rows), dtype=np.intp, count=len(rows))
    new.sort()
    return new
