"""The local background a hotspot is measured against: a rolling low percentile.

Mobile-monitoring practice estimates background as a flat or rolling low percentile of the
recent time series (docs/domain.md §5.2); here it is the ``percentile``-th percentile of one
vehicle's own valid readings over the ``window_s`` seconds that end with the pass being judged.
:func:`background_level` is the maths (linear interpolation, as ``percentile_cont``); the
service evaluates the same definition in the database over the stored readings
(``repository.pass_backgrounds``), so every worker sees the same value.
"""

from __future__ import annotations

import math

import numpy as np

from telemetry.columns import FloatArray, IntArray

__all__ = ["background_level"]


def background_level(
    ts_us: IntArray,
    values: FloatArray,
    *,
    now_us: int,
    window_s: float,
    percentile: float,
    min_samples: int,
) -> float:
    """The ``percentile``-th percentile of the finite values measured in [now - window, now].

    NaN when fewer than ``min_samples`` finite values fall in the window.
    """
    ts_us = np.asarray(ts_us, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    start_us = now_us - round(window_s * 1e6)
    inside = (ts_us >= start_us) & (ts_us <= now_us) & np.isfinite(values)
    if np.count_nonzero(inside) < max(min_samples, 1):
        return math.nan
    return float(np.percentile(values[inside], percentile))
