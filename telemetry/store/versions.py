"""Rows versioned by effective date (thresholds, remote-sensing limits): a revision is a new row
over [effective_from, effective_to), and ranges of one key never overlap."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from telemetry.errors import ConflictError, ValidationError

__all__ = ["check_range", "superseded_by"]


def check_range(effective_from: dt.date, effective_to: dt.date | None) -> None:
    """:class:`ValidationError` for an empty range."""
    if effective_to is not None and effective_to <= effective_from:
        raise ValidationError(
            f"effective_to {effective_to} must be after effective_from {effective_from}"
        )


def _overlaps(
    start: dt.date, end: dt.date | None, other_start: dt.date, other_end: dt.date | None
) -> bool:
    return (end is None or other_start < end) and (other_end is None or start < other_end)


def superseded_by(
    existing: Iterable[Mapping[str, Any]],
    effective_from: dt.date,
    effective_to: dt.date | None,
    *,
    key: str,
    noun: str,
) -> int | None:
    """The id of the open-ended row (of ``existing``: id, effective_from, effective_to) that a
    new row starting at ``effective_from`` closes, if any.

    Raises :class:`ConflictError` when the new range overlaps any row, counting the superseded
    one as closed at ``effective_from``; ``key`` and ``noun`` name them in the message.
    """
    superseded = None
    for row in existing:
        start, end = row["effective_from"], row["effective_to"]
        if end is None and start < effective_from:
            superseded, end = row["id"], effective_from
        if _overlaps(effective_from, effective_to, start, end):
            until = "open-ended" if end is None else f"until {end}"
            raise ConflictError(
                f"{key}: the range from {effective_from} overlaps "
                f"{noun} {row['id']} (from {start}, {until})"
            )
    return superseded
