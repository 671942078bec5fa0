"""Vectorized plausibility checks on decoded readings: what fails becomes a dead letter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from telemetry.readings import POLLUTANTS, WalkthroughBatch

__all__ = ["Limits", "check_walkthrough"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_future_skew_s: float
    max_age_s: float


_NUMERIC = (
    "lat",
    "lon",
    "speed_kmh",
    "heading_deg",
    *POLLUTANTS,
    "temp_c",
    "rh_pct",
    "wind_speed_ms",
    "wind_dir_deg",
)
# Physical ranges: (column, low, high); NaN (absent) passes.
_RANGES = (
    ("speed_kmh", 0.0, 300.0),
    ("heading_deg", 0.0, 360.0),
    ("temp_c", -60.0, 70.0),
    ("rh_pct", 0.0, 100.0),
    ("wind_speed_ms", 0.0, 75.0),
    ("wind_dir_deg", 0.0, 360.0),
    *((p, 0.0, np.inf) for p in POLLUTANTS),
)


def check_walkthrough(
    batch: WalkthroughBatch, *, now_us: int, limits: Limits
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """Return (ok mask, reason per row, detail per row); reason/detail are '' where ok.

    The first failing check names the reason: non_finite, bad_coordinates, clock_future,
    clock_past, out_of_range.
    """
    n = len(batch)
    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)

    def mark(bad: npt.NDArray[np.bool_], code: str, text: npt.NDArray[np.object_] | str) -> None:
        fresh = bad & (reason == "")
        reason[fresh] = code
        detail[fresh] = text[fresh] if isinstance(text, np.ndarray) else text

    for name in _NUMERIC:
        col = getattr(batch, name)
        mark(np.isinf(col), "non_finite", f"{name} is not a finite number")

    lat, lon = batch.lat, batch.lon
    mark(np.isnan(lat) | np.isnan(lon), "bad_coordinates", "lat/lon missing")
    out = (np.abs(lat) > 90) | (np.abs(lon) > 180)
    mark(out, "bad_coordinates", "lat must be within ±90 and lon within ±180 degrees")
    null_island = (np.abs(lat) < 1e-6) & (np.abs(lon) < 1e-6)
    mark(null_island, "bad_coordinates", "lat=0, lon=0 (no GPS fix reported as null island)")

    ahead_s = (batch.ts_us - now_us) / 1e6
    mark(
        ahead_s > limits.max_future_skew_s,
        "clock_future",
        f"measurement time is more than {limits.max_future_skew_s:g} s ahead of the server clock",
    )
    mark(
        -ahead_s > limits.max_age_s,
        "clock_past",
        f"measurement time is more than {limits.max_age_s:g} s in the past",
    )

    for name, low, high in _RANGES:
        col = getattr(batch, name)
        with np.errstate(invalid="ignore"):
            bad = (col < low) | (col > high)
        mark(bad, "out_of_range", f"{name} outside [{low:g}, {high:g}]")

    return reason == "", reason, detail
