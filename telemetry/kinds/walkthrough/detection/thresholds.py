"""The threshold table in columns, with a vectorized "which row applies at this time" lookup.

Effective dates are calendar dates in China Standard Time (UTC+8): a standard takes effect at
local midnight, so a row with ``effective_from = 2026-03-01`` applies from
2026-02-28T16:00:00Z. ``effective_to`` is exclusive (``None``: open-ended).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from telemetry.clock import cst_midnight_us
from telemetry.columns import FloatArray, IntArray

__all__ = ["ThresholdTable"]

_OPEN_END_US = np.iinfo(np.int64).max

_FIELDS = (
    "id",
    "kind",
    "pollutant",
    "limit_value",
    "unit",
    "averaging",
    "source",
    "tier",
    "severity",
    "effective_from",
    "effective_to",
    "confirmed",
    "note",
)


def _as_date(value: Any) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    raise TypeError(f"expected a date, got {value!r}")


@dataclass(frozen=True, slots=True, eq=False)
class ThresholdTable:
    """Rows of table ``thresholds`` as aligned columns; a row position indexes every column.

    ``from_us`` / ``to_us`` are the effective range in epoch microseconds UTC, converted from
    the CST dates (``to_us`` is the int64 maximum for an open-ended row).
    """

    id: IntArray
    kind: npt.NDArray[np.object_]
    pollutant: npt.NDArray[np.object_]
    limit_value: FloatArray
    unit: npt.NDArray[np.object_]
    averaging: npt.NDArray[np.object_]
    source: npt.NDArray[np.object_]
    tier: npt.NDArray[np.object_]
    severity: npt.NDArray[np.object_]
    effective_from: npt.NDArray[np.object_]  # datetime.date
    effective_to: npt.NDArray[np.object_]  # datetime.date | None
    confirmed: npt.NDArray[np.bool_]
    note: npt.NDArray[np.object_]  # str | None
    from_us: IntArray
    to_us: IntArray

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> Self:
        """Build the table from mappings with the columns of table ``thresholds``.

        ``tier`` defaults to ``'limit'``, ``severity`` to ``'warning'``, ``confirmed`` to True
        and ``effective_to`` / ``note`` to None, as in the schema.
        """
        records = [dict(row) for row in rows]

        def column(name: str, default: Any = None) -> npt.NDArray[np.object_]:
            out = np.empty(len(records), dtype=object)
            out[:] = [r.get(name, default) for r in records]
            return out

        starts = [_as_date(r["effective_from"]) for r in records]
        ends = [
            None if r.get("effective_to") is None else _as_date(r["effective_to"]) for r in records
        ]
        for row, start, end in zip(records, starts, ends, strict=True):
            if end is not None and end <= start:
                raise ValueError(
                    f"threshold {row.get('id')}: effective_to {end} <= effective_from {start}"
                )
        eff_from = np.empty(len(records), dtype=object)
        eff_from[:] = starts
        eff_to = np.empty(len(records), dtype=object)
        eff_to[:] = ends
        return cls(
            id=np.array([r["id"] for r in records], dtype=np.int64),
            kind=column("kind"),
            pollutant=column("pollutant"),
            limit_value=np.array([r["limit_value"] for r in records], dtype=np.float64),
            unit=column("unit"),
            averaging=column("averaging"),
            source=column("source"),
            tier=column("tier", "limit"),
            severity=column("severity", "warning"),
            effective_from=eff_from,
            effective_to=eff_to,
            confirmed=np.array([bool(r.get("confirmed", True)) for r in records], dtype=bool),
            note=column("note"),
            from_us=np.array([cst_midnight_us(d) for d in starts], dtype=np.int64),
            to_us=np.array(
                [_OPEN_END_US if d is None else cst_midnight_us(d) for d in ends], dtype=np.int64
            ),
        )

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def lookup(
        self, pollutant: str, ts_us: IntArray, *, tier: str = "limit", kind: str | None = None
    ) -> IntArray:
        """The position of the row effective at each time, or -1 where none is.

        Only rows of ``pollutant`` and ``tier`` (and ``kind``, if given) are candidates. If
        ranges overlap, the row that took effect last wins.
        """
        ts_us = np.asarray(ts_us, dtype=np.int64)
        candidate = (self.pollutant == pollutant) & (self.tier == tier)
        if kind is not None:
            candidate &= self.kind == kind
        rows = np.flatnonzero(candidate)
        result = np.full(ts_us.shape, -1, dtype=np.int64)
        if rows.shape[0] == 0 or ts_us.shape[0] == 0:
            return result
        rows = rows[np.argsort(-self.from_us[rows], kind="stable")]
        covers = (self.from_us[rows, None] <= ts_us) & (ts_us < self.to_us[rows, None])
        first = np.argmax(covers, axis=0)
        found = covers[first, np.arange(ts_us.shape[0])]
        result[found] = rows[first[found]]
        return result

    def row(self, position: int) -> dict[str, Any]:
        """The fields of the row at ``position``, as in table ``thresholds``."""
        return {
            name: (value.item() if isinstance(value, np.generic) else value)
            for name in _FIELDS
            for value in (getattr(self, name)[position],)
        }
