"""Walk-through (走航) vehicles: 1 Hz air-quality readings snapped to road segments."""

from __future__ import annotations

import time

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

from telemetry import metrics
from telemetry.alerts.exceedance import Exceedance
from telemetry.alerts.verification import CleanPasses, verify_alerts
from telemetry.kinds.checks import Limits
from telemetry.kinds.contract import CheckResult, DetectWindow, Kind, KindRows, Outcome
from telemetry.kinds.walkthrough.checks import check_walkthrough
from telemetry.kinds.walkthrough.detect_repository import (
    read_rows,
    touched_vehicles,
    write_cursors,
    write_faults,
)
from telemetry.kinds.walkthrough.detection.calibration import (
    CalibrationPeriods,
    calibration_mask,
)
from telemetry.kinds.walkthrough.detection.faults import FaultParams
from telemetry.kinds.walkthrough.detection.judge import Assessment, DetectParams, assess_passes
from telemetry.kinds.walkthrough.detection.ordered import OrderedParams, Plan, plan_detection
from telemetry.kinds.walkthrough.detection.thresholds import ThresholdTable
from telemetry.kinds.walkthrough.detection.tracker import PassStats
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
from telemetry.store.calibrations import overlapping_periods
from telemetry.store.declared_units import load_vehicle_units
from telemetry.store.lags import load_lags
from telemetry.store.vehicles import upsert_vehicles

__all__ = ["WalkthroughPipeline", "WalkthroughReading", "walkthrough_batch"]


class WalkthroughPipeline:
    """Snap → store for walk-through readings in the ingest batch; detection (drive passes,
    sensor faults, judging, verification) runs in :meth:`detect`, on committed rows read back
    in (vehicle, time) order, whichever worker stored them (docs/adr/0011). Keeps only
    reference data between calls: the road index, the segments' roads, the thresholds, the
    vehicles' declared units, calibration periods and analyser lags."""

    kind = Kind.WALKTHROUGH
    record: type[msgspec.Struct] = WalkthroughReading

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._params = DetectParams.from_settings(settings)
        self._index = SegmentIndex.build([])
        self._thresholds = ThresholdTable.from_rows([])
        self._roads: dict[int, str] = {}
        self._vehicle_units: dict[str, dict[str, str]] = {}  # units declared at registration
        self._calibrations = CalibrationPeriods.from_rows([])  # registered by operators
        # Analyser lags (docs/domain.md §5.8): per vehicle with one, per pollutant in POLLUTANTS
        # order (0: none), and its largest.
        self._lags: dict[str, list[float]] = {}
        self._lag_max_s: dict[str, float] = {}
        self._ordered = OrderedParams(
            max_gap_s=settings.pass_max_gap_s,
            max_speed_kmh=settings.quality_max_speed_kmh,
            faults=FaultParams(
                flatline_s=settings.fault_flatline_s,
                full_scale=settings.fault_full_scale,
                max_step=settings.fault_max_step,
                max_gap_s=settings.pass_max_gap_s,
            ),
            lag_max_gap_s=settings.lag_max_gap_s,
        )

    @property
    def segments(self) -> int:
        return len(self._index)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        self._index = SegmentIndex.build(await load_segment_geometries(pool))
        self._roads = await load_segment_roads(pool)
        self._thresholds = await load_thresholds(pool, self.kind.value)
        self._vehicle_units = await load_vehicle_units(pool)
        # Periods that can still cover an accepted reading (readings older than max_age_s
        # are refused); a period registered later takes effect at the next refresh.
        now_us = time.time_ns() // 1000
        self._calibrations = CalibrationPeriods.from_rows(
            await overlapping_periods(
                pool,
                None,
                since_us=now_us - round(self._settings.max_age_s * 1e6),
                until_us=2**62,
            )
        )
        # A lag registered or changed later applies from the next refresh on.
        lags = await load_lags(pool, None)
        self._lags = {v: [lag.get(p, 0.0) for p in POLLUTANTS] for v, lag in lags.items()}
        self._lag_max_s = {v: max(lag) for v, lag in self._lags.items() if max(lag) > 0}

    def to_batch(self, rows: KindRows) -> WalkthroughBatch:
        return walkthrough_batch(rows, vehicle_units=self._vehicle_units)

    def check(self, batch: WalkthroughBatch, *, now_us: int, limits: Limits) -> CheckResult:
        return check_walkthrough(batch, now_us=now_us, limits=limits)

    async def commit(
        self, conn: asyncpg.Connection, batch: WalkthroughBatch, *, now_us: int
    ) -> Outcome:
        """Snap and store; nothing here depends on which readings this worker receives."""
        s = self._settings
        segment_id, distance = self._index.snap(
            batch.lon, batch.lat, batch.heading_deg, s.snap_tolerance_m
        )
        calibrated = calibration_mask(batch.vehicle_id, batch.ts_us, POLLUTANTS, self._calibrations)
        new = await insert_walkthrough(conn, batch, segment_id, distance, calibrated=calibrated)
        fresh = batch.take(new)
        await upsert_vehicles(
            conn,
            self.kind.value,
            fresh.vehicle_id,
            fresh.ts_us,
            fresh.lat,
            fresh.lon,
            fresh.received_us,
        )
        return Outcome(len(batch), len(new))

    async def detect(self, conn: asyncpg.Connection, window: DetectWindow) -> Outcome:
        """One detector tick over the partitions of ``window``, inside its fenced transaction:
        read the touched vehicles' rows back, close and judge passes as the tracker would on
        the whole ordered sequence, write sensor faults and advance the cursors."""
        s = self._settings
        gap_us = round(s.pass_max_gap_s * 1e6)
        touched = await touched_vehicles(
            conn,
            window.partitions,
            window.since_us,
            window.horizon_us,
            partition_count=window.partition_count,
            gap_us=gap_us,
            final=window.final,
            lag_max_s=self._lag_max_s,
        )
        if not len(touched):
            return Outcome(0, 0)
        rows = await read_rows(conn, touched)
        horizon = np.iinfo(np.int64).max // 2 if window.final else min(window.horizon_us)
        plan = plan_detection(
            rows,
            touched.cursors,
            self._ordered,
            horizon_us=horizon,
            lags_s=self._lag_table(touched.vehicle_id),
        )
        at = plan.fault_rows
        await write_faults(
            conn,
            touched.vehicle_id[rows.vehicle[at]],
            rows.ts_us[at],
            plan.fault_code,
            plan.fault_pollutants,
        )
        await write_cursors(conn, touched.vehicle_id, plan)
        exceedances = await self._judge(conn, plan.closed)
        return Outcome(0, 0, exceedances, state=plan)

    def _lag_table(self, vehicle_id: npt.NDArray[np.object_]) -> npt.NDArray[np.float64] | None:
        """The vehicles' lags as vehicles × pollutants (0: none); None when none has one."""
        ids = vehicle_id.tolist()
        if not any(v in self._lag_max_s for v in ids):
            return None
        none = [0.0] * len(POLLUTANTS)
        table = [self._lags.get(v, none) for v in ids]
        return np.array(table, dtype=np.float64).reshape(-1, len(POLLUTANTS))

    async def idle(self, conn: asyncpg.Connection, *, now_us: int) -> Outcome:
        """Nothing: quiet passes are closed by :meth:`detect` at the horizon."""
        return Outcome(0, 0)

    async def _judge(self, conn: asyncpg.Connection, closed: PassStats) -> list[Exceedance]:
        """Judge closed passes against each vehicle's stored background, then let the clean
        ones verify the open alerts of their stretch (same transaction as the tick)."""
        if not len(closed):
            return []
        s = self._settings
        # A vehicle's passes in measurement order, one round each: a background stored for
        # one pass is reused by the next as if they had been judged one by one, however the
        # ticks happened to group them.
        closed = closed.take(np.lexsort((closed.last_us, closed.vehicle_id.astype(str))))
        rank = _rank_within_vehicle(closed.vehicle_id)
        backgrounds = np.full((len(closed), len(POLLUTANTS)), np.nan)
        for r in range(int(rank.max()) + 1):
            round_ = np.flatnonzero(rank == r)
            backgrounds[round_] = await pass_backgrounds(
                conn,
                closed.vehicle_id[round_],
                closed.last_us[round_],
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
        """After a detector tick commits: count what it found."""
        plan: Plan | None = outcome.state
        if plan is None:
            return
        if plan.late:
            metrics.LATE_READINGS.labels(self.kind.value).inc(plan.late)
        for why in (plan.new_faults, plan.skipped):
            if why.shape[0] == 0:
                continue
            codes, counts = np.unique(why.astype(str), return_counts=True)
            for code, n in zip(codes.tolist(), counts.tolist(), strict=True):
                metrics.DETECTION_SKIPPED.labels(code).inc(n)


def _rank_within_vehicle(vehicle_id: npt.NDArray[np.str_]) -> npt.NDArray[np.intp]:
    """Each row's position among the rows of its vehicle (rows grouped by vehicle)."""
    n = vehicle_id.shape[0]
    start = np.ones(n, dtype=bool)
    start[1:] = vehicle_id[1:] != vehicle_id[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return (np.arange(n) - first).astype(np.intp)


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
