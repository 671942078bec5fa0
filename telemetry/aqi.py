"""HJ 633 air quality sub-indices (IAQI), the AQI, its primary pollutants and its level.

Pure numpy: no I/O, no clock. The breakpoints are data, not code: table ``aqi_breakpoints``
(migration 0016, docs/domain.md §2.4) holds them per standard, pollutant and averaging time,
and :meth:`BreakpointTable.from_rows` turns its rows into the curves used here.

- **Sub-index.** IAQI_P = (IAQI_Hi − IAQI_Lo) / (BP_Hi − BP_Lo) × (C_P − BP_Lo) + IAQI_Lo,
  between the breakpoints either side of the concentration, rounded **up** to an integer. The
  concentration is first rounded as HJ 633-2026 asks (GB/T 8170: whole numbers, CO to one
  decimal; round half to even). Above a curve's last breakpoint the sub-index is that
  breakpoint's IAQI: 500 for a full curve, 200 for SO2 1 h and 300 for O3 8 h, the values
  HJ 633-2026 assigns above 800 µg/m³. A negative or absent concentration has no sub-index.
- **AQI.** The largest sub-index, at least 1 (HJ 633-2026's range is 1–500); the primary
  pollutants are those at the AQI, named only when the AQI is above 50.
- **Reports.** :data:`REPORTS` says which averaging time of each pollutant a report uses:
  ``hourly`` is the HJ 633-2026 real-time report (1 h curves; PM 1-hour means against the
  daily curves), ``daily`` the daily report (24 h curves, O3 daily maximum 8 h).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from telemetry.columns import FloatArray

__all__ = [
    "AQI_POLLUTANTS",
    "LEVELS",
    "REPORTS",
    "REPORT_WINDOW_S",
    "AqiLevel",
    "BreakpointTable",
    "Curve",
    "IndicativeAqi",
    "aqi",
    "indicative_aqi",
    "level_of",
    "sub_index",
]

#: The six pollutants of HJ 633-2026's reports, by their walk-through channel names.
AQI_POLLUTANTS: tuple[str, ...] = ("so2", "no2", "co", "o3", "pm10", "pm25")

#: Per report, the averaging time whose curve each pollutant's sub-index uses.
REPORTS: dict[str, dict[str, str]] = {
    "hourly": {"so2": "1h", "no2": "1h", "co": "1h", "o3": "1h", "pm10": "24h", "pm25": "24h"},
    "daily": {"so2": "24h", "no2": "24h", "co": "24h", "o3": "8h", "pm10": "24h", "pm25": "24h"},
}

#: Decimals a concentration is rounded to before interpolation (HJ 633-2026, GB/T 8170).
_DECIMALS: dict[str, int] = {"co": 1}


@dataclass(frozen=True, slots=True)
class AqiLevel:
    """One AQI level of HJ 633 (both versions): the AQI range, its category and colour."""

    level: int
    low: int
    high: int
    category_zh: str
    category: str
    colour: str
    rgb: str  # the hexadecimal colour of caiyunapp/aqi-hub (secondary, docs/domain.md §2.4)


LEVELS: tuple[AqiLevel, ...] = (
    AqiLevel(1, 0, 50, "优", "excellent", "green", "#00E400"),
    AqiLevel(2, 51, 100, "良", "good", "yellow", "#FFFF00"),
    AqiLevel(3, 101, 150, "轻度污染", "lightly polluted", "orange", "#FF7E00"),
    AqiLevel(4, 151, 200, "中度污染", "moderately polluted", "red", "#FF0000"),
    AqiLevel(5, 201, 300, "重度污染", "heavily polluted", "purple", "#99004C"),
    AqiLevel(6, 301, 500, "严重污染", "severely polluted", "maroon", "#7E0023"),
)
_LEVEL_TOPS = np.array([lv.high for lv in LEVELS[:-1]], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class Curve:
    """One pollutant's breakpoints at one averaging time: concentrations (strictly
    increasing, from 0) and the IAQI at each (increasing)."""

    pollutant: str
    averaging: str
    unit: str
    concentration: FloatArray
    iaqi: FloatArray
    confirmed: bool


@dataclass(frozen=True, slots=True, eq=False)
class BreakpointTable:
    """The curves of one standard, by (pollutant, averaging)."""

    standard: str
    curves: Mapping[tuple[str, str], Curve]

    @classmethod
    def from_rows(cls, standard: str, rows: Iterable[Mapping[str, Any]]) -> Self:
        """Build from rows with the columns of ``aqi_breakpoints`` (those of other standards
        are skipped); a curve that does not start at 0, or whose concentrations or IAQI do not
        increase, is a ValueError."""
        points: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for r in rows:
            if r["standard"] == standard:
                points.setdefault((r["pollutant"], r["averaging"]), []).append(r)
        curves = {}
        for key, items in points.items():
            items = sorted(items, key=lambda r: float(r["iaqi"]))
            iaqi = np.array([float(r["iaqi"]) for r in items])
            conc = np.array([float(r["concentration"]) for r in items])
            units = {r["unit"] for r in items}
            if (
                len(items) < 2
                or iaqi[0] != 0
                or conc[0] != 0
                or not (np.diff(conc) > 0).all()
                or not (np.diff(iaqi) > 0).all()
                or len(units) != 1
            ):
                raise ValueError(
                    f"{standard} {key[0]} {key[1]}: breakpoints must start at 0, increase in "
                    "both concentration and IAQI, and share one unit"
                )
            curves[key] = Curve(
                key[0],
                key[1],
                units.pop(),
                conc,
                iaqi,
                all(bool(r.get("confirmed", True)) for r in items),
            )
        return cls(standard, curves)

    def curve(self, pollutant: str, averaging: str) -> Curve | None:
        return self.curves.get((pollutant, averaging))


def sub_index(concentration: npt.ArrayLike, curve: Curve) -> FloatArray:
    """The IAQI of each concentration (in the curve's unit) on ``curve``; NaN where the
    concentration is NaN or negative. See the module docstring for rounding and the top."""
    c = np.round(np.asarray(concentration, dtype=np.float64), _DECIMALS.get(curve.pollutant, 0))
    bp, iq = curve.concentration, curve.iaqi
    hi = np.clip(np.searchsorted(bp, c, side="right"), 1, bp.shape[0] - 1)
    lo = hi - 1
    with np.errstate(invalid="ignore"):
        value = (iq[hi] - iq[lo]) / (bp[hi] - bp[lo]) * (c - bp[lo]) + iq[lo]
        value = np.where(c >= bp[-1], iq[-1], value)
        # Round off the float noise of the division before rounding up: 75.00000000001 is 75.
        value = np.ceil(np.round(value, 6))
        return np.where(np.isnan(c) | (c < 0), np.nan, value)


def aqi(sub_indices: npt.ArrayLike) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """From sub-indices shaped (places, pollutants) with NaN where unknown: the AQI per place
    (NaN where no sub-index is known; at least 1 otherwise) and which pollutants are primary
    (at the AQI, when the AQI is above 50)."""
    sub = np.asarray(sub_indices, dtype=np.float64)
    known = ~np.isnan(sub)
    top = np.where(known, sub, -np.inf).max(axis=1, initial=-np.inf)
    value = np.where(np.isneginf(top), np.nan, np.maximum(top, 1.0))
    primary = known & (sub == top[:, None]) & (value[:, None] > 50)
    return value, primary


def level_of(value: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """The AQI level (1 to 6, see :data:`LEVELS`) of each AQI; 0 where it is NaN."""
    v = np.asarray(value, dtype=np.float64)
    level = np.searchsorted(_LEVEL_TOPS, v, side="left") + 1
    return np.where(np.isnan(v), 0, level).astype(np.intp)


#: The shortest window a report's sub-indices may rest on: its averaging time.
REPORT_WINDOW_S: dict[str, float] = {"hourly": 3600.0, "daily": 86400.0}


@dataclass(frozen=True, slots=True, eq=False)
class IndicativeAqi:
    """Sub-indices and the AQI of places (rows) over :data:`AQI_POLLUTANTS` (columns).

    ``covered`` says where the data meets the coverage rule of :func:`indicative_aqi`; the
    sub-index is NaN elsewhere, and so is the AQI of a place with no covered pollutant.
    """

    report: str
    averaging: tuple[str, ...]
    units: tuple[str, ...]
    covered: npt.NDArray[np.bool_]
    sub_index: FloatArray
    value: FloatArray
    primary: npt.NDArray[np.bool_]
    level: npt.NDArray[np.intp]


def indicative_aqi(
    concentration: npt.ArrayLike,
    passes: npt.ArrayLike,
    drive_days: npt.ArrayLike,
    *,
    table: BreakpointTable,
    report: str,
    window_s: float,
    min_passes: int,
    min_drive_days: int,
) -> IndicativeAqi:
    """The indicative AQI of places measured by drive passes (docs/domain.md §2.5).

    Each argument array is shaped (places, :data:`AQI_POLLUTANTS`): the concentration (the
    median across passes of each pass's mean, in the curve's unit; NaN: none), the passes and
    the distinct drive days it rests on. Coverage rule: the window is at least the report's
    averaging time (:data:`REPORT_WINDOW_S`); for ``hourly`` the pollutant has at least
    ``min_passes`` passes, for ``daily`` at least ``min_drive_days`` drive days. A pollutant
    without a curve in ``table`` is not covered.
    """
    if report not in REPORTS:
        raise ValueError(f"unknown AQI report {report!r} (one of {', '.join(REPORTS)})")
    c = np.asarray(concentration, dtype=np.float64).reshape(-1, len(AQI_POLLUTANTS))
    n = c.shape[0]
    count = np.asarray(passes).reshape(n, -1) if n else np.zeros((0, len(AQI_POLLUTANTS)))
    days = np.asarray(drive_days).reshape(n, -1) if n else np.zeros((0, len(AQI_POLLUTANTS)))
    averaging = tuple(REPORTS[report][p] for p in AQI_POLLUTANTS)
    curves = [table.curve(p, a) for p, a in zip(AQI_POLLUTANTS, averaging, strict=True)]
    enough = count >= min_passes if report == "hourly" else days >= min_drive_days
    covered = (
        enough
        & ~np.isnan(c)
        & np.array([cv is not None for cv in curves], dtype=bool)[None, :]
        & (window_s >= REPORT_WINDOW_S[report])
    )
    sub = np.full(c.shape, np.nan)
    for j, cv in enumerate(curves):  # per pollutant, not per place
        if cv is not None:
            sub[:, j] = np.where(covered[:, j], sub_index(c[:, j], cv), np.nan)
    value, primary = aqi(sub)
    return IndicativeAqi(
        report=report,
        averaging=averaging,
        units=tuple(cv.unit if cv is not None else "" for cv in curves),
        covered=covered & ~np.isnan(sub),
        sub_index=sub,
        value=value,
        primary=primary,
        level=level_of(value),
    )
