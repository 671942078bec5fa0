"""Plausibility checks of remote-sensing passes, and of the limits an operator enters."""

from __future__ import annotations

from telemetry.kinds.checks import CheckResult, Checks, Limits
from telemetry.kinds.remote_sensing.record import FLOAT_COLUMNS, RemoteSensingBatch

__all__ = ["check_remote_sensing"]

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
