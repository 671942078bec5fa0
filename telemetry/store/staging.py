"""The bulk, idempotent write every kind's store uses: COPY into a per-connection staging
table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``, returning which rows were new."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

__all__ = ["PG_EPOCH_US", "Staging", "binary_copy", "first_of_each_key", "json_text"]

_encoder = msgspec.json.Encoder()


def json_text(value: object) -> str | None:
    """A jsonb value for COPY: asyncpg's binary COPY has no jsonb encoder, so extras travel
    as text and the insert casts them."""
    return None if value is None else _encoder.encode(value).decode()


#: PostgreSQL's binary timestamps count microseconds from 2000-01-01 UTC.
PG_EPOCH_US = 946_684_800_000_000
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no extension
_COPY_TRAILER = b"\xff\xff"


def binary_copy(columns: Sequence[npt.NDArray[np.generic]]) -> bytes:
    """A COPY ``FORMAT binary`` stream of fixed-width columns, built by numpy in one pass:
    per row the field count, then each field's length and big-endian value. Columns are
    ``int16/32/64``, ``float64`` (``smallint``, ``integer``, ``bigint``, ``double precision``;
    an ``int64`` of microseconds since :data:`PG_EPOCH_US` for ``timestamptz``) or ``S1``
    (``char(1)``). No NULLs: absent values travel as sentinels (NaN, -1) and the insert turns
    them into NULL."""
    n = len(columns[0]) if columns else 0
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, column in enumerate(columns):
        if len(column) != n:
            raise ValueError("columns of different lengths")
        fields += [(f"l{i}", ">i4"), (f"v{i}", column.dtype.newbyteorder(">").str)]
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["count"] = len(columns)
    for i, column in enumerate(columns):
        rows[f"l{i}"] = column.dtype.itemsize
        rows[f"v{i}"] = column
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


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
    table, which must return the ``row_no`` of every row it inserted."""

    table: str
    columns: tuple[str, ...]
    create: str
    insert: str

    async def insert_new(
        self, conn: asyncpg.Connection, values: Sequence[list[object]]
    ) -> npt.NDArray[np.intp]:
        """COPY ``values`` (one list per column) in, insert what is new, and return the
        sorted ``row_no`` of the new rows. Runs inside the caller's transaction."""
        await conn.execute(self.create)
        await conn.copy_records_to_table(
            self.table, records=zip(*values, strict=True), columns=self.columns
        )
        rows = await conn.fetch(self.insert)
        new = np.fromiter((r[0] for r in rows), dtype=np.intp, count=len(rows))
        new.sort()
        return new
