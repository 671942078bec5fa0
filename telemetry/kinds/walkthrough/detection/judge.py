"""Walk-through screening: drive passes compared with a reference limit, a local trigger and
the vehicle's own background; one exceedance per pass and pollutant, listing every rule that
fired (docs/adr/0009, docs/domain.md §2.3, §5.2, §5.5).

A pass mean of a few 1 Hz readings is not a valid 1 h or 24 h average, so comparing it with a
GB 3095 limit gives the share of the standard C/S (占标率), rule ``reference_ratio``, never a
legal exceedance; the exceedance multiple (C − S)/S is reported only when the pass itself holds
enough sampling for the limit's averaging time (a long fixed-point measurement).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self

import numpy as np
import numpy.typing as npt

from telemetry.alerts.exceedance import Exceedance
from telemetry.columns import FloatArray, IntArray
from telemetry.kinds.contract import Kind
from telemetry.kinds.walkthrough.detection.thresholds import ThresholdTable
from telemetry.kinds.walkthrough.detection.tracker import PassStats
from telemetry.kinds.walkthrough.record import POLLUTANT_UNITS, POLLUTANTS

if TYPE_CHECKING:
    from telemetry.settings import Settings

__all__ = [
    "RULE",
    "VALID_AVERAGE_S",
    "Assessment",
    "DetectParams",
    "assess_passes",
    "judge_passes",
    "severity_of",
]

#: The alert-level rule of every walk-through alert: a screening of drive passes. The rules that
#: fired are listed in ``Exceedance.rules``: ``reference_ratio``, ``fixed_point_trigger``,
#: ``hotspot``.
RULE = "pass_screening"

#: Sampling a valid average needs (GB 3095-2026 Table 4, docs/domain.md §2.3), in seconds of
#: 1 Hz readings: 45 minutes for an hourly value, 6 hours for 8 h, 20 hours for a daily one.
VALID_AVERAGE_S: dict[str, float] = {"1h": 45 * 60.0, "8h": 6 * 3600.0, "24h": 20 * 3600.0}


class PassLike(Protocol):
    """What judging needs of a set of passes (see :class:`.tracker.PassStats`)."""

    @property
    def vehicle_id(self) -> npt.NDArray[Any]: ...
    @property
    def segment_id(self) -> IntArray: ...
    @property
    def first_us(self) -> IntArray: ...
    @property
    def last_us(self) -> IntArray: ...
    @property
    def readings(self) -> IntArray: ...


@dataclass(frozen=True, slots=True)
class DetectParams:
    """The tunables of walk-through detection, from the ``quality_*``, ``pass_*`` and
    ``hotspot_*`` settings."""

    max_speed_kmh: float
    pass_max_gap_s: float
    hotspot_factor: float
    hotspot_percentile: float
    hotspot_window_s: float
    hotspot_min_samples: int
    hotspot_min_pass_readings: int
    warning_ratio: float = 1.5
    critical_ratio: float = 3.0
    drive_gap_s: float = 900.0
    fixed_point_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            max_speed_kmh=settings.quality_max_speed_kmh,
            pass_max_gap_s=settings.pass_max_gap_s,
            hotspot_factor=settings.hotspot_factor,
            hotspot_percentile=settings.hotspot_percentile,
            hotspot_window_s=settings.hotspot_window_s,
            hotspot_min_samples=settings.hotspot_min_samples,
            hotspot_min_pass_readings=settings.hotspot_min_pass_readings,
            warning_ratio=settings.alert_warning_ratio,
            critical_ratio=settings.alert_critical_ratio,
            drive_gap_s=settings.alert_drive_gap_s,
            fixed_point_s=settings.alert_fixed_point_s,
        )

    @property
    def hotspot_source(self) -> str:
        """How a hotspot's limit was derived, for the alert's ``source``."""
        return (
            f"hotspot: pass mean >= {float(self.hotspot_factor)} x the vehicle's own "
            f"P{self.hotspot_percentile:g} background ({self.hotspot_window_s:g} s window, "
            "docs/domain.md §5.2)"
        )


def severity_of(ratio: float, params: DetectParams) -> str:
    """The severity band of a ratio: 'info' below ``warning_ratio``, 'warning' below
    ``critical_ratio``, else 'critical'."""
    if ratio >= params.critical_ratio:
        return "critical"
    if ratio >= params.warning_ratio:
        return "warning"
    return "info"


@dataclass(frozen=True, slots=True)
class Assessment:
    """What judging closed passes found: the exceedances, and per pass and pollutant whether
    the pass was *clean* (valid, judged by at least one rule, and no rule fired), which is what
    verification counts."""

    exceedances: list[Exceedance] = field(default_factory=list)
    clean: npt.NDArray[np.bool_] = field(
        default_factory=lambda: np.zeros((0, len(POLLUTANTS)), dtype=bool)
    )


def _tier_values(
    thresholds: ThresholdTable, pollutant: str, first_us: IntArray, tier: str
) -> tuple[IntArray, FloatArray]:
    """The row in force at each pass (-1: none) and its value (NaN: none, or another unit)."""
    rows = thresholds.lookup(pollutant, first_us, tier=tier, kind=Kind.WALKTHROUGH.value)
    value = np.full(rows.shape, np.nan)
    found = rows >= 0
    same_unit = np.zeros(rows.shape, dtype=bool)
    same_unit[found] = thresholds.unit[rows[found]] == POLLUTANT_UNITS[pollutant]
    value[same_unit] = thresholds.limit_value[rows[same_unit]]
    rows = np.where(same_unit, rows, -1)
    return rows, value


def _background_matrix(backgrounds: FloatArray | Mapping[str, float], passes: int) -> FloatArray:
    if isinstance(backgrounds, Mapping):
        row = [float(backgrounds.get(p, math.nan)) for p in POLLUTANTS]
        return np.tile(np.asarray(row, dtype=np.float64), (passes, 1))
    out = np.asarray(backgrounds, dtype=np.float64)
    if out.shape != (passes, len(POLLUTANTS)):
        raise ValueError(f"backgrounds: shape {out.shape}, expected {(passes, len(POLLUTANTS))}")
    return out


def assess_passes(
    passes: PassStats,
    thresholds: ThresholdTable,
    backgrounds: FloatArray | Mapping[str, float],
    params: DetectParams,
    roads: Mapping[int, str] | None = None,
) -> Assessment:
    """Judge closed passes. For every pass and pollutant the rules are:

    - ``reference_ratio``: the pass mean C over the ``'limit'``-tier row S in force at the
      pass's first reading (rows in another unit are ignored): C/S > 1;
    - ``fixed_point_trigger``: the pass mean over a ``'trigger'``-tier row, a local value that
      calls for a fixed-point measurement (TVOC, DB3502/T 153);
    - ``hotspot``: at least ``hotspot_min_pass_readings`` values and a mean at least
      ``hotspot_factor`` x the background of that pass (``backgrounds``: one row per pass, one
      column per pollutant, NaN where unknown; a mapping applies to every pass).

    Every pass and pollutant with at least one rule fired is *one* exceedance, listing the
    rules; its ``ratio`` is C/S when the reference rule was evaluated, otherwise the ratio of
    the rule that fired; severity follows the largest rule ratio (:func:`severity_of`). The
    subject is the segment's road (``roads``: segment id → road key) so a plume over several
    segments of one road is one alert. A pass of at least ``fixed_point_s`` seconds on one
    segment is a fixed-point measurement (定点复测): its alert is confirmed at once.
    """
    count = len(passes)
    clean = np.zeros((count, len(POLLUTANTS)), dtype=bool)
    if count == 0:
        return Assessment([], clean)
    means = passes.mean()
    bg = _background_matrix(backgrounds, count)
    duration_s = (passes.last_us - passes.first_us) / 1e6
    fixed_point = duration_s >= params.fixed_point_s
    found: list[Exceedance] = []
    for j, pollutant in enumerate(POLLUTANTS):
        n, mean, peak = passes.n[:, j], means[:, j], passes.peak[:, j]
        has_values = n > 0
        ref_row, ref = _tier_values(thresholds, pollutant, passes.first_us, "limit")
        trig_row, trig = _tier_values(thresholds, pollutant, passes.first_us, "trigger")
        background = bg[:, j]
        hot_limit = params.hotspot_factor * background
        hot_judged = (
            (n >= params.hotspot_min_pass_readings) & np.isfinite(background) & (background > 0)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            ref_ratio = mean / ref
            trig_ratio = mean / trig
            hot_ratio = np.where(hot_judged, mean / hot_limit, np.nan)
        over_ref = has_values & (ref_ratio > 1)
        over_trig = has_values & (trig_ratio > 1)
        over_hot = hot_judged & (hot_ratio >= 1)
        fired = over_ref | over_trig | over_hot
        judged = has_values & (np.isfinite(ref) | np.isfinite(trig) | hot_judged)
        valid = n >= params.hotspot_min_pass_readings
        clean[:, j] = valid & judged & ~fired
        for i in np.flatnonzero(fired):
            found.append(
                _exceedance(
                    passes,
                    int(i),
                    pollutant=pollutant,
                    thresholds=thresholds,
                    ref_row=int(ref_row[i]),
                    trig_row=int(trig_row[i]),
                    rules=(
                        ("reference_ratio",) * bool(over_ref[i])
                        + ("fixed_point_trigger",) * bool(over_trig[i])
                        + ("hotspot",) * bool(over_hot[i])
                    ),
                    ratios=(float(ref_ratio[i]), float(trig_ratio[i]), float(hot_ratio[i])),
                    background=float(background[i]),
                    value=float(mean[i]),
                    peak=float(peak[i]),
                    readings=int(n[i]),
                    duration_s=float(duration_s[i]),
                    fixed_point=bool(fixed_point[i]),
                    params=params,
                    roads=roads,
                )
            )
    return Assessment(found, clean)


def judge_passes(
    passes: PassStats,
    thresholds: ThresholdTable,
    backgrounds: FloatArray | Mapping[str, float],
    params: DetectParams,
    roads: Mapping[int, str] | None = None,
) -> list[Exceedance]:
    """The exceedances of :func:`assess_passes`."""
    return assess_passes(passes, thresholds, backgrounds, params, roads).exceedances


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _exceedance(
    passes: PassLike,
    i: int,
    *,
    pollutant: str,
    thresholds: ThresholdTable,
    ref_row: int,
    trig_row: int,
    rules: tuple[str, ...],
    ratios: tuple[float, float, float],
    background: float,
    value: float,
    peak: float,
    readings: int,
    duration_s: float,
    fixed_point: bool,
    params: DetectParams,
    roads: Mapping[int, str] | None,
) -> Exceedance:
    ref_ratio, trig_ratio, hot_ratio = ratios
    segment = int(passes.segment_id[i])
    details: dict[str, Any] = {
        "pass_readings": int(passes.readings[i]),
        "pass_duration_s": duration_s,
        "fixed_point": fixed_point,
        "drive_gap_s": params.drive_gap_s,
        "background": _finite(background),
        "hotspot_ratio": _finite(hot_ratio),
        "reference_ratio": _finite(ref_ratio),
        "trigger_ratio": _finite(trig_ratio),
        "bands": {"warning": params.warning_ratio, "critical": params.critical_ratio},
    }
    multiple: float | None = None
    if ref_row >= 0:
        row = thresholds.row(ref_row)
        threshold_id: int | None = int(row["id"])
        limit_value = float(row["limit_value"])
        averaging: str | None = row["averaging"]
        source = row["source"]
        ratio = ref_ratio
        required_s = VALID_AVERAGE_S.get(str(averaging))
        valid_average = required_s is not None and readings >= required_s
        if valid_average:
            multiple = ref_ratio - 1.0
        details.update(
            valid_average=valid_average,
            note=(
                f"pass mean / {averaging} reference limit = C/S (占标率); "
                + (
                    "the pass holds enough sampling for a valid average, so (C − S)/S is "
                    "an exceedance multiple"
                    if valid_average
                    else "a pass is not a valid average: an indicator, not a legal exceedance"
                )
            ),
            threshold_note=row["note"],
            confirmed=bool(row["confirmed"]),
        )
    elif trig_row >= 0:
        row = thresholds.row(trig_row)
        threshold_id = int(row["id"])
        limit_value = float(row["limit_value"])
        averaging = row["averaging"]
        source = row["source"]
        ratio = trig_ratio
        details.update(
            note="pass mean over a local trigger: a fixed-point measurement is called for",
            threshold_note=row["note"],
            confirmed=bool(row["confirmed"]),
        )
    else:
        threshold_id = None
        limit_value = params.hotspot_factor * background
        averaging = None
        source = params.hotspot_source
        ratio = hot_ratio
        details.update(note="pass mean against the vehicle's own recent background")
    if "hotspot" in rules:
        details.update(
            factor=params.hotspot_factor,
            percentile=params.hotspot_percentile,
            window_s=params.hotspot_window_s,
        )
    worst = max(r for r in (ref_ratio, trig_ratio, hot_ratio) if math.isfinite(r))
    road = roads.get(segment) if roads is not None else None
    return Exceedance(
        kind=Kind.WALKTHROUGH.value,
        subject=f"road:{road}" if road is not None else f"segment:{segment}",
        segment_id=segment,
        pollutant=pollutant,
        rule=RULE,
        threshold_id=threshold_id,
        limit_value=limit_value,
        unit=POLLUTANT_UNITS[pollutant],
        averaging=averaging,
        source=source,
        severity=severity_of(worst, params),
        first_us=int(passes.first_us[i]),
        last_us=int(passes.last_us[i]),
        value=value,
        peak=peak,
        multiple=multiple,
        vehicle_id=str(passes.vehicle_id[i]),
        readings=readings,
        details=details,
        ratio=ratio,
        rules=rules,
        segments=(segment,),
        confidence="confirmed" if fixed_point else "suspected",
    )
