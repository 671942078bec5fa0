"""Analyser lag: each pollutant reaches its analyser some seconds after the air entered the
inlet (docs/domain.md §5.8), so a value reported at time t describes the air where the vehicle
was at t − L, L the pollutant's lag.

Two ways to put that right, both along one vehicle's ordered track:

- :func:`retime` moves the values to the readings: the value of the air sampled at row time t
  is the value reported at t + L, interpolated linearly between reported samples. Each row then
  keeps its own position, so it is snapped once for every pollutant.
- :func:`inlet_position` moves a reported value to the position where its air was sampled,
  interpolated along the track at t − L.

:func:`estimate_lag` finds L from a recorded drive past a known source: the lag at which the
pollutant's series best correlates with the vehicle's proximity to the source.

Everything here is pure: one vehicle's readings in strictly increasing time, arrays in,
arrays out. A caller working batch by batch must hand :func:`retime` the vehicle's readings up
to ``L_max`` seconds past the last row it wants judged (its horizon), where ``L_max`` is the
vehicle's largest lag: a row whose t + L lies beyond the readings given gets NaN, not a guess,
and must be judged again once the later readings have arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telemetry.columns import FloatArray, IntArray
from telemetry.geo import haversine_m

__all__ = [
    "LagEstimate",
    "estimate_lag",
    "inlet_position",
    "interpolate_at",
    "retime",
    "retime_vehicles",
]


def _check_track(ts_us: IntArray) -> IntArray:
    ts = np.asarray(ts_us, dtype=np.int64)
    if ts.ndim != 1:
        raise ValueError(f"ts_us must be one-dimensional, got shape {ts.shape}")
    if ts.shape[0] > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        raise ValueError("ts_us must be strictly increasing (one vehicle, in time order)")
    return ts


def interpolate_at(
    ts_us: IntArray, values: FloatArray, at_us: FloatArray, *, max_gap_s: float
) -> FloatArray:
    """``values`` (sampled at strictly increasing ``ts_us``) linearly interpolated at the times
    ``at_us`` (any order, fractional microseconds allowed).

    Only finite samples count. NaN where ``at_us`` lies before the first or after the last
    finite sample, or between two finite samples more than ``max_gap_s`` apart; a time equal to
    a sample's gives that sample's value whatever its neighbours.
    """
    ts = np.asarray(ts_us, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    at = np.asarray(at_us, dtype=np.float64)
    out = np.full(at.shape, np.nan)
    finite = np.isfinite(v)
    ts, v = ts[finite], v[finite]
    if ts.shape[0] == 0:
        return out
    t = (ts - ts[0]).astype(np.float64)  # relative: exact in float64 for any drive
    x = at - float(ts[0])
    right = np.searchsorted(t, x, side="right")  # first sample after x
    left = right - 1
    inside = (left >= 0) & (right < t.shape[0])
    lo = np.clip(left, 0, t.shape[0] - 1)
    hi = np.clip(right, 0, t.shape[0] - 1)
    exact = (left >= 0) & (t[lo] == x)
    span = t[hi] - t[lo]
    usable = inside & (span <= max_gap_s * 1e6)
    frac = np.divide(x - t[lo], span, out=np.zeros_like(x), where=span > 0)
    between = v[lo] + frac * (v[hi] - v[lo])
    out = np.where(usable, between, out)
    return np.where(exact, v[lo], out)


def retime(
    ts_us: IntArray, values: FloatArray, lags_s: FloatArray, *, max_gap_s: float
) -> FloatArray:
    """The value of the air sampled at each row's time: for pollutant j, the value reported
    at ``ts_us + lags_s[j]``, interpolated between the reported samples.

    ``values`` is readings × pollutants (NaN absent), ``lags_s`` one lag per column (0: no
    lag). NaN where that time is past the last finite sample given (the later readings have
    not arrived yet) or falls in a gap longer than ``max_gap_s`` (see :func:`interpolate_at`).
    """
    ts = _check_track(ts_us)
    v = np.asarray(values, dtype=np.float64)
    lags = np.asarray(lags_s, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != ts.shape[0] or lags.shape != (v.shape[1],):
        raise ValueError(
            f"values {v.shape} must be readings × pollutants ({ts.shape[0]} readings) and "
            f"lags_s {lags.shape} one per pollutant"
        )
    if not bool(np.all(np.isfinite(lags) & (lags >= 0))):
        raise ValueError("lags must be finite and non-negative")
    out = np.empty_like(v)
    for j in range(v.shape[1]):  # one pass per pollutant, vectorized over the readings
        out[:, j] = interpolate_at(ts, v[:, j], ts + lags[j] * 1e6, max_gap_s=max_gap_s)
    return out


def retime_vehicles(
    vehicle: IntArray,
    ts_us: IntArray,
    values: FloatArray,
    lags_s: FloatArray,
    *,
    max_gap_s: float,
) -> FloatArray:
    """:func:`retime` for several vehicles at once: rows sorted by (``vehicle``, ``ts_us``),
    ``vehicle`` indexing the rows of ``lags_s`` (vehicles × pollutants, 0: no lag). A value is
    only ever taken from its own vehicle's readings."""
    v = np.asarray(vehicle, dtype=np.int64)
    ts = np.asarray(ts_us, dtype=np.int64)
    x = np.asarray(values, dtype=np.float64)
    lags = np.asarray(lags_s, dtype=np.float64)
    n = ts.shape[0]
    if v.shape != (n,) or x.ndim != 2 or x.shape[0] != n or lags.ndim != 2:
        raise ValueError("vehicle, ts_us and values must have one row per reading")
    if lags.shape[1] != x.shape[1] or (n and int(v.max()) >= lags.shape[0]):
        raise ValueError(f"lags_s {lags.shape} must be vehicles × pollutants")
    if not bool(np.all(np.isfinite(lags) & (lags >= 0))):
        raise ValueError("lags must be finite and non-negative")
    if n == 0:
        return np.empty_like(x)
    ordered = (v[1:] > v[:-1]) | ((v[1:] == v[:-1]) & (ts[1:] > ts[:-1]))
    if not bool(np.all(ordered)):
        raise ValueError("rows must be sorted by (vehicle, ts_us), one row per time")
    # Each vehicle's times on one axis, far enough apart that no lag reaches the next vehicle
    # and the space between two vehicles is a gap no interpolation crosses.
    first = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    start = np.repeat(ts[first], np.diff(np.r_[first, n]))
    rel = ts - start
    stride = int(rel.max()) + int((lags.max() + max_gap_s) * 1e6) + 2_000_000
    block = np.cumsum(np.r_[False, v[1:] != v[:-1]])
    axis = rel + block * stride
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        at = axis + lags[v, j] * 1e6
        out[:, j] = interpolate_at(axis, x[:, j], at, max_gap_s=max_gap_s)
    return out


def inlet_position(
    ts_us: IntArray,
    lat: FloatArray,
    lon: FloatArray,
    lags_s: FloatArray,
    *,
    max_gap_s: float,
) -> tuple[FloatArray, FloatArray]:
    """Where the air of each reported value entered the inlet: the track interpolated at
    ``ts_us - lags_s[j]``, as (lat, lon), each readings × pollutants.

    NaN where that time is before the first reading given or in a gap of the track longer
    than ``max_gap_s``. Linear in degrees, which is exact enough over the metres between two
    readings (not across the antimeridian).
    """
    ts = _check_track(ts_us)
    lags = np.atleast_1d(np.asarray(lags_s, dtype=np.float64))
    if not bool(np.all(np.isfinite(lags) & (lags >= 0))):
        raise ValueError("lags must be finite and non-negative")
    at = ts[:, None] - lags[None, :] * 1e6
    lat_at = interpolate_at(ts, np.asarray(lat, np.float64), at, max_gap_s=max_gap_s)
    lon_at = interpolate_at(ts, np.asarray(lon, np.float64), at, max_gap_s=max_gap_s)
    return lat_at, lon_at


@dataclass(frozen=True, slots=True)
class LagEstimate:
    """The lag that best explains a pollutant's series by the proximity to a source.

    ``lag_s`` maximises the correlation (refined between grid points by a parabola); ``peak``
    is that correlation (Pearson r), ``prominence`` how far it stands above the curve's
    median, ``width_s`` the width of the curve's peak at half its height above the curve's
    minimum (a sharp, prominent peak is a trustworthy estimate); ``lags_s`` and
    ``correlation`` are the whole curve, ``samples`` the readings it rests on at the peak."""

    lag_s: float
    peak: float
    prominence: float
    width_s: float
    samples: int
    lags_s: FloatArray
    correlation: FloatArray


def _pearson(x: FloatArray, y: FloatArray) -> tuple[FloatArray, IntArray]:
    """Row-wise Pearson correlation of ``x`` (lags × readings) with ``y`` (readings), over the
    pairs where both are finite; NaN with fewer than 3 pairs or no spread."""
    ok = np.isfinite(x) & np.isfinite(y)[None, :]
    n = ok.sum(axis=1)
    xs = np.where(ok, x, 0.0)
    ys = np.where(ok, y[None, :], 0.0)
    safe_n = np.maximum(n, 1)
    mx = xs.sum(axis=1) / safe_n
    my = ys.sum(axis=1) / safe_n
    dx = np.where(ok, xs - mx[:, None], 0.0)
    dy = np.where(ok, ys - my[:, None], 0.0)
    cov = (dx * dy).sum(axis=1)
    var = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    r = np.divide(cov, var, out=np.full(cov.shape, np.nan), where=var > 0)
    r[n < 3] = np.nan
    return r, n.astype(np.int64)


def estimate_lag(
    ts_us: IntArray,
    lat: FloatArray,
    lon: FloatArray,
    values: FloatArray,
    *,
    source_lat: float,
    source_lon: float,
    max_lag_s: float = 30.0,
    step_s: float = 0.5,
    sigma_m: float = 50.0,
    max_gap_s: float = 5.0,
) -> LagEstimate:
    """Estimate a pollutant's lag from a drive (or drives, in one time-ordered sequence) past
    a known source at (``source_lat``, ``source_lon``).

    For each candidate lag L from 0 to ``max_lag_s`` in steps of ``step_s``, the proximity of
    the inlet to the source when the air of each value was sampled is
    exp(−d² / 2σ²), d the distance from the source of the track at t − L; the estimate is the
    L whose proximity correlates best with the values. ``sigma_m`` should be about the width
    of the source's plume across the road. :class:`ValueError` when no lag has enough data
    (three readings with a value and a position) or the values do not vary.
    """
    ts = _check_track(ts_us)
    if not (max_lag_s > 0 and step_s > 0 and sigma_m > 0):
        raise ValueError("max_lag_s, step_s and sigma_m must be positive")
    lags = np.arange(0.0, max_lag_s + step_s / 2, step_s)
    lat_at, lon_at = inlet_position(ts, lat, lon, lags, max_gap_s=max_gap_s)
    d = haversine_m(lat_at, lon_at, source_lat, source_lon)  # readings × lags
    proximity = np.exp(-(d * d) / (2.0 * sigma_m * sigma_m)).T
    curve, counts = _pearson(proximity, np.asarray(values, dtype=np.float64))
    if not bool(np.isfinite(curve).any()):
        raise ValueError("too few readings with a value and a position, or no variation")
    best = int(np.nanargmax(curve))
    lag = float(lags[best])
    if 0 < best < lags.shape[0] - 1 and np.isfinite(curve[best - 1 : best + 2]).all():
        # The vertex of the parabola through the peak and its neighbours.
        y0, y1, y2 = curve[best - 1], curve[best], curve[best + 1]
        denominator = y0 - 2 * y1 + y2
        if denominator < 0:
            lag += float(0.5 * (y0 - y2) / denominator) * step_s
    low = float(np.nanmin(curve))
    half = curve[best] - (curve[best] - low) / 2
    above = np.where(np.isfinite(curve), curve >= half, False)
    # The run of lags above half height that holds the peak.
    edges = np.flatnonzero(~above)
    left = edges[edges < best]
    right = edges[edges > best]
    first = int(left[-1]) + 1 if left.shape[0] else 0
    last = int(right[0]) - 1 if right.shape[0] else lags.shape[0] - 1
    return LagEstimate(
        lag_s=lag,
        peak=float(curve[best]),
        prominence=float(curve[best] - np.nanmedian(curve)),
        width_s=float(lags[last] - lags[first] + step_s),
        samples=int(counts[best]),
        lags_s=lags,
        correlation=curve,
    )
