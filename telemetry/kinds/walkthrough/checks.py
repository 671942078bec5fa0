"""Plausibility checks of walk-through readings: finite numbers, position, clock, declared
units, ranges."""

from __future__ import annotations

import numpy as np

from telemetry.kinds.checks import CheckResult, Checks, Limits, Range
from telemetry.kinds.walkthrough.record import (
    POLLUTANTS,
    WalkthroughBatch,
    declared_unit_factors,
)

__all__ = ["check_walkthrough"]

_WALKTHROUGH_NUMERIC = (
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
_WALKTHROUGH_RANGES: tuple[Range, ...] = (
    ("speed_kmh", 0.0, 300.0),
    ("heading_deg", 0.0, 360.0),
    ("temp_c", -60.0, 70.0),
    ("rh_pct", 0.0, 100.0),
    ("wind_speed_ms", 0.0, 75.0),
    ("wind_dir_deg", 0.0, 360.0),
    *((p, 0.0, np.inf) for p in POLLUTANTS),
)


def check_walkthrough(batch: WalkthroughBatch, *, now_us: int, limits: Limits) -> CheckResult:
    """Return (ok mask, reason per row, detail per row); reason/detail are '' where ok."""
    checks = Checks(len(batch))
    checks.finite((name, getattr(batch, name)) for name in _WALKTHROUGH_NUMERIC)
    checks.position_and_clock(batch.ts_us, batch.lat, batch.lon, now_us=now_us, limits=limits)
    _, refused = declared_unit_factors(batch.units, batch.extra)
    checks.mark_each(refused != "", "unit", refused)
    checks.ranges((n, getattr(batch, n), lo, hi) for n, lo, hi in _WALKTHROUGH_RANGES)
    return checks.result()
