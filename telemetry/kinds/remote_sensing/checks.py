"""Plausibility checks of remote-sensing passes, and of the limits an operator enters."""

from __future__ import annotations

import math

from telemetry.errors import ValidationError
from telemetry.kinds.checks import CheckResult, Checks, Limits
from telemetry.kinds.remote_sensing.detection import RS_POLLUTANTS
from telemetry.kinds.remote_sensing.record import FLOAT_COLUMNS, FUEL_TYPES, RemoteSensingBatch

__all__ = ["check_limit", "check_remote_sensing"]

_RANGES: tuple[tuple[str, float, float], ...] = (
    ("speed_kmh", 0.0, 250.0),
    ("accel_ms2", -15.0, 15.0),
    ("slope_pct", -100.0, 100.0),
    ("temp_c", -60.0, 70.0),
    ("rh_pct", 0.0, 100.0),
    ("pressure_kpa", 30.0, 120.0),
    ("wind_speed_ms", 0.0, 75.0),
    ("co2_pct", 0.0, 100.0),
    ("co_pct", 0.0, 100.0),
    ("hc_ppm", 0.0, 1e6),
    ("no_ppm", 0.0, 1e6),
    ("opacity_pct", 0.0, 100.0),
    ("ringelmann", 0.0, 5.0),
)


def check_remote_sensing(batch: RemoteSensingBatch, *, now_us: int, limits: Limits) -> CheckResult:
    """Plausibility checks: finite numbers, position and clock, physical ranges."""
    checks = Checks(len(batch))
    checks.finite((name, getattr(batch, name)) for name in FLOAT_COLUMNS)
    checks.position_and_clock(batch.ts_us, batch.lat, batch.lon, now_us=now_us, limits=limits)
    checks.ranges((n, getattr(batch, n), lo, hi) for n, lo, hi in _RANGES)
    return checks.result()


def check_limit(
    *, fuel_type: str, pollutant: str, limit_value: float, unit: str, source: str
) -> None:
    """A limit an operator enters: a known pollutant in the unit the pass reports it in, a
    fuel type that has limits, a positive value and its source; else :class:`ValidationError`."""
    if pollutant not in RS_POLLUTANTS:
        raise ValidationError(
            f"unknown remote-sensing pollutant {pollutant!r}; one of {sorted(RS_POLLUTANTS)}"
        )
    column, expected = RS_POLLUTANTS[pollutant]
    if unit != expected:
        raise ValidationError(
            f"{pollutant} is compared with {column} in {expected!r}: the limit's unit must be "
            f"{expected!r}, not {unit!r}"
        )
    if fuel_type == "unknown" or fuel_type not in FUEL_TYPES:
        known = [f for f in FUEL_TYPES if f != "unknown"]
        raise ValidationError(f"fuel_type {fuel_type!r} has no limits; one of {known}")
    if not (math.isfinite(limit_value) and limit_value > 0):
        raise ValidationError(f"limit_value must be a positive number, got {limit_value}")
    if not source.strip():
        raise ValidationError("a limit needs its source")
