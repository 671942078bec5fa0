"""Walk-through (走航) vehicles: 1 Hz air-quality readings snapped to road segments."""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

from telemetry import metrics
from telemetry.alerts.exceedance import Exceedance
from telemetry.alerts.verification import CleanPasses, verify_alerts
from telemetry.kinds.checks import Limits
from telemetry.kinds.contract import CheckResult, Kind, KindRows, Outcome
from telemetry.kinds.walkthrough.checks import check_walkthrough
from telemetry.kinds.walkthrough.detection.faults import FaultParams, FaultState, sensor_faults
from telemetry.kinds.walkthrough.detection.judge import Assessment, DetectParams, assess_passes
from telemetry.kinds.walkthrough.detection.quality import quality_mask
from telemetry.kinds.walkthrough.detection.thresholds import ThresholdTable
from telemetry.kinds.walkthrough.detection.tracker import PassStats, advance, fragments
from telemetry.kinds.walkthrough.record import (
    POLLUTANTS,
    WalkthroughBatch,
    WalkthroughReading,
    walkthrough_batch,
)
from telemetry.kinds.walkthrough.repository import (
    insert_walkthrough,
    load_segment_roads,
    load_thresholds,
    pass_backgrounds,
)
from telemetry.roads.repository import load_segment_geometries
from telemetry.roads.snap import SegmentIndex
from telemetry.settings import Settings
from telemetry.store.vehicles import upsert_vehicles

__all__ = ["WalkthroughPipeline", "WalkthroughReading", "walkthrough_batch"]


class WalkthroughPipeline:
    """Snap → store → detect → verify for walk-through readings; keeps the road index, the
    segments' roads, the threshold table and the passes in progress between batches. The
    background is read from the stored readings (docs/adr/0009), not kept here."""

    kind = Kind.WALKTHROUGH
    record: type[msgspec.Struct] = WalkthroughReading

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._params = DetectParams.from_settings(settings)
        self._index = SegmentIndex.build([])
        self._thresholds = ThresholdTable.from_rows([])
        self._roads: dict[int, str] = {}
        self._open = PassStats.empty()  # each vehicle's pass in progress
        self._fault_params = FaultParams(
            flatline_s=settings.fault_flatline_s,
            full_scale=settings.fault_full_scale,
            max_step=settings.fault_max_step,
            max_gap_s=settings.pass_max_gap_s,
        )
        self._faults = FaultState.empty()  # each vehicle's newest judged values

    @property
    def segments(self) -> int:
        return len(self._index)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        self._index = SegmentIndex.build(await load_segment_geometries(pool))
        self._roads = await load_segment_roads(pool)
        self._thresholds = await load_thresholds(pool, self.kind.value)

    def to_batch(self, rows: KindRows) -> WalkthroughBatch:
        return walkthrough_batch(rows)

    def check(self, batch: WalkthroughBatch, *, now_us: int, limits: Limits) -> CheckResult:
        return check_walkthrough(batch, now_us=now_us, limits=limits)

    async def commit(
        self, conn: asyncpg.Connection, batch: WalkthroughBatch, *, now_us: int
    ) -> Outcome:
        s = self._settings
        segment_id, distance = self._index.snap(
            batch.lon, batch.lat, batch.heading_deg, s.snap_tolerance_m
        )
        values = np.stack([batch.pollutant(p) for p in POLLUTANTS], axis=1)
        faults = sensor_faults(
            batch.vehicle_id, batch.ts_us, values, self._faults, self._fault_params
        )
        new = await insert_walkthrough(
            conn,
            batch,
            segment_id,
            distance,
            fault=faults.code,
            fault_pollutants=faults.pollutants,
        )
        fresh, fresh_segments = batch.take(new), segment_id[new]
        await upsert_vehicles(
            conn,
            self.kind.value,
            fresh.vehicle_id,
            fresh.ts_us,
            fresh.lat,
            fresh.lon,
            fresh.received_us,
        )
        usable, why = quality_mask(fresh, fresh_segments, max_speed_kmh=s.quality_max_speed_kmh)
        # A faulty channel's values take no part in detection (docs/domain.md §5.7).
        sound = _without(fresh, faults.channels[new])
        found = fragments(sound, fresh_segments, usable, max_gap_s=s.pass_max_gap_s)
        closed, still_open = advance(self._open, found, now_us=now_us, max_gap_s=s.pass_max_gap_s)
        exceedances = await self._judge(conn, closed)
        state = _Advance(fresh, usable, why, still_open, faults.state, faults.code[new])
        return Outcome(len(batch), len(new), exceedances, state=state)

    async def idle(self, conn: asyncpg.Connection, *, now_us: int) -> Outcome:
        """Close the passes of vehicles that went quiet, and judge them."""
        gap_s = self._settings.pass_max_gap_s
        closed, still_open = advance(self._open, PassStats.empty(), now_us=now_us, max_gap_s=gap_s)
        if not len(closed):
            return Outcome(0, 0)
        exceedances = await self._judge(conn, closed)
        return Outcome(0, 0, exceedances, state=_Advance(None, None, None, still_open))

    async def _judge(self, conn: asyncpg.Connection, closed: PassStats) -> list[Exceedance]:
        """Judge closed passes against each vehicle's stored background, then let the clean
        ones verify the open alerts of their stretch (same transaction as the batch)."""
        if not len(closed):
            return []
        s = self._settings
        backgrounds = await pass_backgrounds(
            conn,
            closed.vehicle_id,
            closed.last_us,
            window_s=s.hotspot_window_s,
            percentile=s.hotspot_percentile,
            min_samples=s.hotspot_min_samples,
            refresh_s=s.hotspot_refresh_s,
        )
        found = assess_passes(closed, self._thresholds, backgrounds, self._params, self._roads)
        await verify_alerts(
            conn,
            self.kind.value,
            _clean_passes(closed, found),
            required=s.alert_verify_passes,
            drive_gap_s=s.alert_drive_gap_s,
        )
        return found.exceedances

    def committed(self, outcome: Outcome) -> None:
        state: _Advance | None = outcome.state
        if state is None:
            return
        self._open = state.still_open
        metrics.OPEN_PASSES.set(len(self._open))
        if state.faults is not None:
            self._faults = state.faults
        if state.fault is not None and len(state.fault):
            codes, counts = np.unique(
                state.fault[state.fault != ""].astype(str), return_counts=True
            )
            for code, n in zip(codes.tolist(), counts.tolist(), strict=True):
                metrics.DETECTION_SKIPPED.labels(code).inc(n)
        fresh, usable, why = state.fresh, state.usable, state.why
        if fresh is None or usable is None or why is None or len(fresh) == 0:
            return
        codes, counts = np.unique(why[~usable].astype(str), return_counts=True)
        for code, n in zip(codes.tolist(), counts.tolist(), strict=True):
            metrics.DETECTION_SKIPPED.labels(code).inc(n)


def _without(batch: WalkthroughBatch, faulty: npt.NDArray[np.bool_]) -> WalkthroughBatch:
    """``batch`` with the values of faulty channels (readings × pollutants) made absent."""
    if not faulty.any():
        return batch
    columns = {
        p: np.where(faulty[:, j], np.nan, batch.pollutant(p)) for j, p in enumerate(POLLUTANTS)
    }
    return replace(batch, **columns)


def _clean_passes(closed: PassStats, found: Assessment) -> CleanPasses:
    """The (pass, pollutant) pairs that came back clean, as columns for verification."""
    rows, cols = np.nonzero(found.clean)
    pollutants = np.empty(len(POLLUTANTS), dtype=object)
    pollutants[:] = POLLUTANTS
    return CleanPasses(
        vehicle_id=closed.vehicle_id[rows].astype(object),
        segment_id=closed.segment_id[rows],
        pollutant=pollutants[cols],
        first_us=closed.first_us[rows],
        last_us=closed.last_us[rows],
        mean=closed.mean()[rows, cols],
        readings=closed.n[rows, cols].astype(np.int64),
    )


@dataclass(frozen=True, slots=True)
class _Advance:
    """What a committed batch (or idle tick) moves forward."""

    fresh: WalkthroughBatch | None
    usable: npt.NDArray[np.bool_] | None
    why: npt.NDArray[np.object_] | None
    still_open: PassStats
    faults: FaultState | None = None  # the fault state after the batch
    fault: npt.NDArray[np.object_] | None = None  # each new reading's fault code
