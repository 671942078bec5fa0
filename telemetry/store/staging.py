"""The bulk, idempotent write every kind's store uses: COPY into a per-connection staging
table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``, returning which rows were new."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

__all__ = [
    "Staging",
    "binary_copy",
    "binary_row",
    "first_of_each_key",
    "json_text",
    "parse_binary_copy",
]

_encoder = msgspec.json.Encoder()


def json_text(value: object) -> str | None:
    """A jsonb value for COPY: asyncpg's binary COPY has no jsonb encoder, so extras travel
    as text and the insert casts them."""
    return None if value is None else _encoder.encode(value).decode()


# PostgreSQL's binary COPY format: a header (signature, flags 0, no extension), then per row
# a field count (int16) and per field its length (int32) and big-endian bytes, then -1.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"


def binary_row(fields: Sequence[tuple[str, str]]) -> np.dtype[np.void]:
    """The numpy layout of one binary COPY row whose fields (name, big-endian numpy type) are
    all fixed-width and never NULL: the field count, then each field's length and value."""
    layout = [("count", ">i2")]
    for name, kind in fields:
        layout += [(f"len_{name}", ">i4"), (name, kind)]
    return np.dtype(layout)


def parse_binary_copy(data: bytes, row: np.dtype[np.void]) -> npt.NDArray[np.void]:
    """The rows of a binary COPY stream (``COPY … TO STDOUT (FORMAT binary)``) laid out as
    ``row`` (:func:`binary_row`), without a copy."""
    n = (len(data) - len(_COPY_HEADER) - len(_COPY_TRAILER)) // row.itemsize
    return np.frombuffer(data, dtype=row, count=max(n, 0), offset=len(_COPY_HEADER))


def binary_copy(columns: Sequence[npt.NDArray[np.generic]]) -> bytes:
    """A binary COPY stream of fixed-width columns, built by numpy in one pass. Columns are
    ``int16/32/64``, ``float64`` (``smallint``, ``integer``, ``bigint``, ``double precision``;
    an ``int64`` of microseconds since :data:`telemetry.clock.PG_EPOCH_US` for ``timestamptz``)
    or ``S1`` (``char(1)``). No NULLs: absent values travel as sentinels (NaN, -1) and the
    insert turns them into NULL."""
    n = len(columns[0]) if columns else 0
    if any(len(column) != n for column in columns):
        raise ValueError("columns of different lengths")
    names = [f"c{i}" for i in range(len(columns))]
    types = [c.dtype.newbyteorder(">").str for c in columns]
    row = binary_row(list(zip(names, types, strict=True)))
    rows = np.empty(n, dtype=row)
    rows["count"] = len(columns)
    for name, column in zip(names, columns, strict=True):
        rows[f"len_{name}"] = column.dtype.itemsize
        rows[name] = column
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
