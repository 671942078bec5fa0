"""The bulk, idempotent write every kind's store uses: COPY into a per-connection staging
table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``, returning which rows were new."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

__all__ = ["Staging", "first_of_each_key", "json_text"]

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


@dataclass(frozen=True, slots=True)
class Staging:
    """A kind's staging table: its name, columns (the first being ``row_no``), the statement
    creating it (a temporary table emptied at commit) and the ``insert`` from it into the real
    table, which must return the ``row_no`` of every row it inserted.

    Or, cheaper (no join of what was inserted back to the staging rows), ``insert`` returns
    only how many rows it inserted, and ``inserted_rows`` (run only when that is fewer than
    were staged: a redelivery) returns the ``row_no`` of the staged rows that this insert
    stored, told apart by when they were stored and their arrival time.
    """

    table: str
    columns: tuple[str, ...]
    create: str
    insert: str
    inserted_rows: str | None = None

    async def insert_new(
        self, conn: asyncpg.Connection, values: Sequence[list[object]]
    ) -> npt.NDArray[np.intp]:
        """COPY ``values`` (one list per column) in, insert what is new, and return the
        sorted ``row_no`` of the new rows. Runs inside the caller's transaction."""
        await conn.execute(self.create)
        await conn.copy_records_to_table(
            self.table, records=zip(*values, strict=True), columns=self.columns
        )
        if self.inserted_rows is not None:
            staged = len(values[0])
            if await conn.fetchval(self.insert) == staged:
                return np.asarray(values[0], dtype=np.intp)
            rows = await conn.fetch(self.inserted_rows)
        else:
            rows = await conn.fetch(self.insert)
        new = np.fromiter((r[0] for r in rows), dtype=np.intp, count=len(rows))
        new.sort()
        return new
