"""What detection finds: one pass or event over a limit, of any vehicle kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Exceedance"]


@dataclass(frozen=True, slots=True)
class Exceedance:
    """One pass (or event) over a limit. Times are measurement times, epoch µs UTC.

    ``value`` is the quantity compared with ``limit_value`` (for a walk-through pass, the pass
    mean), ``peak`` the highest single reading, ``multiple`` = (value − limit) / limit.
    """

    kind: str
    subject: str
    segment_id: int | None
    pollutant: str
    rule: str
    threshold_id: int | None
    limit_value: float
    unit: str
    averaging: str | None
    source: str
    severity: str
    first_us: int
    last_us: int
    value: float
    peak: float
    multiple: float
    vehicle_id: str
    readings: int
    details: dict[str, Any]
