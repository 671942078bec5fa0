"""Plausibility checks of emergency records and their gas values."""

from __future__ import annotations

import math

import numpy as np

from telemetry.errors import ValidationError
from telemetry.kinds.checks import CheckResult, Checks, Limits
from telemetry.kinds.emergency.detection import SEVERITIES, UNITS
from telemetry.kinds.emergency.record import WEATHER, EmergencyBatch

__all__ = ["check_emergency", "check_tier"]

_RANGES = (
    ("wind_speed_ms", 0.0, 75.0),
    ("wind_dir_deg", 0.0, 360.0),
    ("temp_c", -60.0, 70.0),
    ("pressure_kpa", 30.0, 110.0),
)


def check_emergency(batch: EmergencyBatch, *, now_us: int, limits: Limits) -> CheckResult:
    """Position, clock and weather checks per record; a gas value that is infinite or
    negative rejects its whole record (reason ``out_of_range``)."""
    checks = Checks(len(batch))
    checks.finite((name, getattr(batch, name)) for name in ("lat", "lon", *WEATHER))
    n = len(batch)
    for name in np.unique(batch.substance.astype(str)).tolist():  # per substance
        of = batch.substance == name
        infinite = np.bincount(batch.gas_record[of & np.isinf(batch.value)], minlength=n) > 0
        checks.mark(infinite, "out_of_range", f"gases.{name}.value is not a finite number")
    checks.position_and_clock(batch.ts_us, batch.lat, batch.lon, now_us=now_us, limits=limits)
    checks.ranges((name, getattr(batch, name), lo, hi) for name, lo, hi in _RANGES)
    for name in np.unique(batch.substance.astype(str)).tolist():
        of = batch.substance == name
        negative = np.bincount(batch.gas_record[of & (batch.value < 0)], minlength=n) > 0
        checks.mark(negative, "out_of_range", f"gases.{name}.value is negative")
    return checks.result()


def check_tier(
    *,
    limit_value: float,
    unit: str,
    severity: str,
    source: str,
    tier: str | None = None,
    averaging: str | None = None,
) -> None:
    """A tier an operator enters: a positive limit in a known unit, a known severity, its
    source, and (for a new tier) a name and an averaging time; else :class:`ValidationError`."""
    if not (math.isfinite(limit_value) and limit_value > 0):
        raise ValidationError(f"limit_value must be a positive number, got {limit_value}")
    if unit not in UNITS:
        raise ValidationError(f"unit {unit!r} is not one of {list(UNITS)}")
    if severity not in SEVERITIES:
        raise ValidationError(f"severity {severity!r} is not one of {list(SEVERITIES)}")
    if not source.strip():
        raise ValidationError("a tier needs its source")
    if (tier is not None and not tier.strip()) or (averaging is not None and not averaging.strip()):
        raise ValidationError("a tier needs a name and an averaging time")
