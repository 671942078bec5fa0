"""Vectorized plausibility checks on decoded records: what fails becomes a dead letter.

``Checks`` collects, per row, the first failing check's reason code and detail. Every kind
runs the common position and clock checks, then its own ranges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from telemetry.columns import FloatArray, IntArray

__all__ = ["CheckResult", "Checks", "Limits", "Range"]

Range = tuple[str, float, float]
#: (ok mask, reason code per row, detail per row); reason and detail are '' where ok.
CheckResult = tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_], npt.NDArray[np.object_]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_future_skew_s: float
    max_age_s: float


class Checks:
    """Reason codes per row; the first failing check wins. Reason codes: bad_coordinates,
    clock_future, clock_past, out_of_range (and any a kind adds)."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, "", dtype=object)
        self.detail = np.full(n, "", dtype=object)

    def mark(self, bad: npt.NDArray[np.bool_], code: str, text: str) -> None:
        fresh = bad & (self.reason == "")
        self.reason[fresh] = code
        self.detail[fresh] = text

    def mark_each(
        self, bad: npt.NDArray[np.bool_], code: str, details: npt.NDArray[np.object_]
    ) -> None:
        """Like :meth:`mark`, with a detail per row."""
        fresh = bad & (self.reason == "")
        self.reason[fresh] = code
        self.detail[fresh] = details[fresh]

    def finite(self, columns: Iterable[tuple[str, FloatArray]]) -> None:
        """Infinite values are out_of_range. The decoder already refuses them (NaN and
        Infinity are not JSON; 1e400 does not fit a double): this guards other producers."""
        for name, col in columns:
            self.mark(np.isinf(col), "out_of_range", f"{name} is not a finite number")

    def position_and_clock(
        self, ts_us: IntArray, lat: FloatArray, lon: FloatArray, *, now_us: int, limits: Limits
    ) -> None:
        self.mark(np.isnan(lat) | np.isnan(lon), "bad_coordinates", "lat/lon missing")
        out = (np.abs(lat) > 90) | (np.abs(lon) > 180)
        self.mark(out, "bad_coordinates", "lat must be within ±90 and lon within ±180 degrees")
        null_island = (np.abs(lat) < 1e-6) & (np.abs(lon) < 1e-6)
        self.mark(
            null_island, "bad_coordinates", "lat=0, lon=0 (no GPS fix reported as null island)"
        )
        ahead_s = (ts_us - now_us) / 1e6
        skew, age = limits.max_future_skew_s, limits.max_age_s
        self.mark(
            ahead_s > skew,
            "clock_future",
            f"measurement time is more than {skew:g} s ahead of the server clock",
        )
        self.mark(
            -ahead_s > age, "clock_past", f"measurement time is more than {age:g} s in the past"
        )

    def ranges(self, columns: Iterable[tuple[str, FloatArray, float, float]]) -> None:
        """Values outside [low, high]; NaN (absent) passes."""
        for name, col, low, high in columns:
            with np.errstate(invalid="ignore"):
                bad = (col < low) | (col > high)
            self.mark(bad, "out_of_range", f"{name} outside [{low:g}, {high:g}]")

    def result(self) -> CheckResult:
        return self.reason == "", self.reason, self.detail
