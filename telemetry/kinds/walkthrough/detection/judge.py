"""Walk-through exceedances: drive passes whose mean is over a limit or well above background."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
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

__all__ = ["DetectParams", "judge_passes"]


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
        )

    @property
    def hotspot_source(self) -> str:
        """How a hotspot's limit was derived, for the alert's ``source``."""
        return (
            f"hotspot: pass mean >= {float(self.hotspot_factor)} x "
            f"P{self.hotspot_percentile:g} background ({self.hotspot_window_s:g} s window)"
        )


def _limit_note(averaging: str) -> str:
    if averaging == "instant":
        return "a pass mean compared with an instantaneous trigger value"
    return (
        f"a pass mean compared with a {averaging} limit is an indicator, "
        "not a legal exceedance of the standard"
    )


def _limit_exceedances(
    pollutant: str,
    passes: PassLike,
    n: FloatArray,
    mean: FloatArray,
    peak: FloatArray,
    thresholds: ThresholdTable,
) -> list[Exceedance]:
    rows = thresholds.lookup(pollutant, passes.first_us, tier="limit", kind=Kind.WALKTHROUGH.value)
    # A row in another unit cannot be compared with the readings: it never matches.
    usable_row = np.zeros(rows.shape, dtype=bool)
    found = rows >= 0
    usable_row[found] = thresholds.unit[rows[found]] == POLLUTANT_UNITS[pollutant]
    limit = np.full(rows.shape, np.nan)
    limit[usable_row] = thresholds.limit_value[rows[usable_row]]
    over = usable_row & (n > 0) & (mean > limit)
    out = []
    for i in np.flatnonzero(over):
        row = thresholds.row(int(rows[i]))
        limit_value = float(limit[i])
        value = float(mean[i])
        out.append(
            _exceedance(
                passes,
                int(i),
                pollutant=pollutant,
                rule="limit",
                threshold_id=int(row["id"]),
                limit_value=limit_value,
                averaging=row["averaging"],
                source=row["source"],
                severity=row["severity"],
                value=value,
                peak=float(peak[i]),
                readings=int(n[i]),
                details={
                    "averaging": row["averaging"],
                    "indicator": row["averaging"] != "instant",
                    "note": _limit_note(row["averaging"]),
                    "confirmed": bool(row["confirmed"]),
                    "threshold_note": row["note"],
                    "pass_readings": int(passes.readings[i]),
                },
            )
        )
    return out


def _hotspot_exceedances(
    pollutant: str,
    passes: PassLike,
    n: FloatArray,
    mean: FloatArray,
    peak: FloatArray,
    background: float,
    params: DetectParams,
) -> list[Exceedance]:
    if not math.isfinite(background) or background <= 0:
        return []
    limit_value = params.hotspot_factor * background
    enough = n >= params.hotspot_min_pass_readings
    over = enough & (mean >= limit_value)
    return [
        _exceedance(
            passes,
            int(i),
            pollutant=pollutant,
            rule="hotspot",
            threshold_id=None,
            limit_value=limit_value,
            averaging=None,
            source=params.hotspot_source,
            severity="warning",
            value=float(mean[i]),
            peak=float(peak[i]),
            readings=int(n[i]),
            details={
                "background": background,
                "factor": params.hotspot_factor,
                "percentile": params.hotspot_percentile,
                "window_s": params.hotspot_window_s,
                "pass_readings": int(passes.readings[i]),
            },
        )
        for i in np.flatnonzero(over)
    ]


def _exceedance(
    passes: PassLike,
    i: int,
    *,
    pollutant: str,
    rule: str,
    threshold_id: int | None,
    limit_value: float,
    averaging: str | None,
    source: str,
    severity: str,
    value: float,
    peak: float,
    readings: int,
    details: dict[str, Any],
) -> Exceedance:
    segment = int(passes.segment_id[i])
    return Exceedance(
        kind=Kind.WALKTHROUGH.value,
        subject=f"segment:{segment}",
        segment_id=segment,
        pollutant=pollutant,
        rule=rule,
        threshold_id=threshold_id,
        limit_value=limit_value,
        unit=POLLUTANT_UNITS[pollutant],
        averaging=averaging,
        source=source,
        severity=severity,
        first_us=int(passes.first_us[i]),
        last_us=int(passes.last_us[i]),
        value=value,
        peak=peak,
        multiple=(value - limit_value) / limit_value,
        vehicle_id=str(passes.vehicle_id[i]),
        readings=readings,
        details=details,
    )


def judge_passes(
    passes: PassStats,
    thresholds: ThresholdTable,
    backgrounds: Mapping[str, float],
    params: DetectParams,
) -> list[Exceedance]:
    """The exceedances of closed passes. For every pollutant and pass:

    - rule ``'limit'``: the pass mean is above the ``'limit'``-tier threshold effective at the
      pass's first reading (rows in another unit than the pollutant's are ignored);
    - rule ``'hotspot'``: the pass has at least ``hotspot_min_pass_readings`` values and its
      mean is at least ``hotspot_factor`` x the pollutant's background from ``backgrounds``
      (no hotspot while the background is missing, NaN or not positive).

    ``multiple`` is (mean − limit) / limit, with limit = factor x background for hotspots.
    """
    if len(passes) == 0:
        return []
    means = passes.mean()
    found: list[Exceedance] = []
    for j, pollutant in enumerate(POLLUTANTS):
        n, mean, peak = passes.n[:, j], means[:, j], passes.peak[:, j]
        found += _limit_exceedances(pollutant, passes, n, mean, peak, thresholds)
        background = float(backgrounds.get(pollutant, math.nan))
        found += _hotspot_exceedances(pollutant, passes, n, mean, peak, background, params)
    return found
