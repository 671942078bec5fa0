"""What detection finds: one pass or event over a limit, of any vehicle kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Exceedance"]


@dataclass(frozen=True, slots=True)
class Exceedance:
    """One pass (or event) over a limit. Times are measurement times, epoch µs UTC.

    ``value`` is the quantity compared with ``limit_value`` (for a walk-through pass, the pass
    mean), ``peak`` the highest single reading, ``ratio`` = value / limit (C/S, 占标率; None:
    ``multiple`` + 1) and ``multiple`` = (value − limit) / limit, the exceedance multiple, only
    where a valid average was compared (None otherwise, docs/domain.md §2.3).

    ``rules`` lists every rule that fired for this subject and pollutant (default: ``rule``),
    ``segments`` the road segments of the stretch, ``confidence`` is ``'suspected'`` (one
    drive only) or ``'confirmed'``.
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
    multiple: float | None
    vehicle_id: str
    readings: int
    details: dict[str, Any]
    ratio: float | None = None
    rules: tuple[str, ...] = ()
    segments: tuple[int, ...] = ()
    confidence: str = "confirmed"

    @property
    def share(self) -> float:
        """C/S: ``ratio``, or ``multiple`` + 1 when only the multiple was given."""
        if self.ratio is not None:
            return self.ratio
        return (self.multiple or 0.0) + 1.0
