"""Remote-sensing (移动遥感监测车) vehicles: one record per measured pass of a passing vehicle.

A pass is judged valid or invalid against the gates in ``rs_gates`` (VSP, speed, acceleration,
slope, weather), its pollutants against the fuel type's limits in ``rs_limits``, and the
plate against the high-emitter rule in ``rs_rule_params`` (docs/domain.md §3). All three
tables are seeded with their sources and reloaded by :meth:`RemoteSensingPipeline.refresh`.
"""

from __future__ import annotations

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

from telemetry.alerts.exceedance import Exceedance
from telemetry.kinds.checks import Limits
from telemetry.kinds.contract import CheckResult, Kind, KindRows, Outcome
from telemetry.kinds.remote_sensing import repository as store
from telemetry.kinds.remote_sensing.checks import check_remote_sensing
from telemetry.kinds.remote_sensing.detection import (
    RS_POLLUTANTS,
    GateTable,
    Judgement,
    LimitTable,
    RuleParams,
    cst_month,
    find_confirmations,
    judge_limits,
    judge_validity,
    month_start_us,
)
from telemetry.kinds.remote_sensing.record import (
    RemoteSensingBatch,
    RemoteSensingRecord,
    objects,
    remote_sensing_batch,
)
from telemetry.roads.repository import load_segment_geometries
from telemetry.roads.snap import SegmentIndex
from telemetry.settings import Settings
from telemetry.store.vehicles import upsert_vehicles

__all__ = ["RemoteSensingPipeline"]


class RemoteSensingPipeline:
    """Judge → store → apply the high-emitter rule, for remote-sensing passes; keeps the road
    index, the gates, the limits and the rule parameters between batches."""

    kind = Kind.REMOTE_SENSING
    record: type[msgspec.Struct] = RemoteSensingRecord

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._index = SegmentIndex.build([])
        self._gates = GateTable.from_rows([])
        self._limits = LimitTable.from_rows([])
        self._rule = RuleParams()

    @property
    def gates(self) -> GateTable:
        return self._gates

    @property
    def limits(self) -> LimitTable:
        return self._limits

    @property
    def rule(self) -> RuleParams:
        return self._rule

    async def refresh(self, pool: asyncpg.Pool) -> None:
        self._index = SegmentIndex.build(await load_segment_geometries(pool))
        reference = await store.load_reference(pool)
        self._gates = GateTable.from_rows(reference.gates)
        self._limits = LimitTable.from_rows(reference.limits)
        self._rule = RuleParams.from_rows(reference.rule)

    def to_batch(self, rows: KindRows) -> RemoteSensingBatch:
        return remote_sensing_batch(rows)

    def check(self, batch: RemoteSensingBatch, *, now_us: int, limits: Limits) -> CheckResult:
        return check_remote_sensing(batch, now_us=now_us, limits=limits)

    def judge(self, batch: RemoteSensingBatch) -> Judgement:
        """VSP, segment, validity and per-pollutant limits for every pass (pure)."""
        vsp = batch.vsp_kw_t()
        heading = np.full(len(batch), np.nan)
        segment_id, distance = self._index.snap(
            batch.lon, batch.lat, heading, self._settings.snap_tolerance_m
        )
        values = batch.values(vsp)
        valid, reason = judge_validity(values, batch.fuel_type, self._gates)
        flags = judge_limits(values, batch.fuel_type, batch.ts_us, valid, self._limits)
        return Judgement(
            vsp_kw_t=vsp,
            segment_id=segment_id,
            snap_distance_m=distance,
            valid=valid,
            reason=reason,
            judged={p: judged for p, (_, judged, _) in flags.items()},
            over={p: over for p, (_, _, over) in flags.items()},
        )

    async def commit(
        self, conn: asyncpg.Connection, batch: RemoteSensingBatch, *, now_us: int
    ) -> Outcome:
        if len(batch) == 0:
            return Outcome(0, 0)
        judgement = self.judge(batch)
        # Batches judging the same plate serialise here, so that each one reads the other's
        # passes when applying the rule (workers sharing a subscription).
        judged = np.zeros(len(batch), dtype=bool)
        for flags in judgement.judged.values():
            judged |= flags
        judged &= batch.plate.astype(bool)  # None: not recognised
        await store.lock_plates(conn, sorted({str(p) for p in batch.plate[judged]}))
        new = await store.insert_passes(conn, batch, judgement)
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
        exceedances = await self._confirm(
            conn, fresh, {p: o[new] for p, o in judgement.over.items()}
        )
        await self._verify(conn, fresh, judgement, new)
        return Outcome(len(batch), len(new), exceedances)

    async def _verify(
        self,
        conn: asyncpg.Connection,
        fresh: RemoteSensingBatch,
        judgement: Judgement,
        new: npt.NDArray[np.intp],
    ) -> None:
        """New valid passes under the limit close the plate's high-emitter alerts for that
        pollutant, when measured after them (docs/adr/0009)."""
        plates: list[str] = []
        pollutants: list[str] = []
        vehicles: list[str] = []
        times: list[int] = []
        values: list[float] = []
        recognised = fresh.plate.astype(bool)
        vsp = judgement.vsp_kw_t[new]
        measured = fresh.values(vsp)
        for pollutant, (column, _) in RS_POLLUTANTS.items():
            clean = judgement.judged[pollutant][new] & ~judgement.over[pollutant][new] & recognised
            at = np.flatnonzero(clean)
            plates += [str(p) for p in fresh.plate[at].tolist()]
            pollutants += [pollutant] * at.shape[0]
            vehicles += [str(v) for v in fresh.vehicle_id[at].tolist()]
            times += [int(t) for t in fresh.ts_us[at].tolist()]
            values += [float(v) for v in np.asarray(measured[column], dtype=float)[at].tolist()]
        await store.resolve_by_clean_passes(conn, plates, pollutants, vehicles, times, values)

    def committed(self, outcome: Outcome) -> None:
        """Nothing to advance: the rule reads its history from the database."""

    async def idle(self, conn: asyncpg.Connection, *, now_us: int) -> Outcome:
        """Nothing falls due without input: every pass is judged when it arrives."""
        return Outcome(0, 0)

    async def _confirm(
        self,
        conn: asyncpg.Connection,
        fresh: RemoteSensingBatch,
        over: dict[str, npt.NDArray[np.bool_]],
    ) -> list[Exceedance]:
        """Apply the high-emitter rule to the plates with a new pass over a limit, against
        their stored valid passes (which include this batch's)."""
        exceeding = np.zeros(len(fresh), dtype=bool)
        for o in over.values():
            exceeding |= o
        exceeding &= fresh.plate.astype(bool)
        if not exceeding.any():
            return []
        rule = self._rule
        first_month = int(cst_month(fresh.ts_us[exceeding]).min())
        since_us = int(month_start_us(first_month - (rule.window_months - 1)))
        history = await store.fetch_plate_history(
            conn,
            plates=sorted({str(p) for p in fresh.plate[exceeding]}),
            since_us=since_us,
            new_keys=(fresh.vehicle_id, fresh.ts_us, fresh.lane),
        )
        found: list[Exceedance] = []
        for pollutant, (column, unit) in RS_POLLUTANTS.items():
            flag = history.over[pollutant]
            judged = ~np.isnan(flag)
            confirmations = find_confirmations(
                history.plate,
                history.ts_us,
                judged,
                judged & (flag > 0),
                history.is_new,
                consecutive=rule.consecutive,
                window_months=rule.window_months,
            )
            for i in range(len(confirmations)):
                evidence = confirmations.evidence(i)
                found += self._exceedance(history, pollutant, column, unit, evidence)
        if found:
            await store.upsert_high_emitters(conn, found)
        return found

    def _exceedance(
        self,
        history: store.PlateHistory,
        pollutant: str,
        column: str,
        unit: str,
        evidence: npt.NDArray[np.intp],
    ) -> list[Exceedance]:
        """The confirmation whose evidence is ``evidence`` (positions into ``history``), told
        against the limit effective at its latest pass; none if that limit was withdrawn
        from ``rs_limits`` since the passes were judged."""
        latest = int(evidence[-1])
        values = history.values[column][evidence]
        fuel = history.fuel_type[latest]
        ts = int(history.ts_us[latest])
        row = int(self._limits.lookup(pollutant, objects([fuel]), np.array([ts]))[0])
        if row < 0:
            return []
        value = float(values[-1])
        limit = float(self._limits.limit_value[row])
        segment = int(history.segment_id[latest])
        passes = [
            {
                "vehicle_id": str(history.vehicle_id[j]),
                "ts": _iso(int(history.ts_us[j])),
                "lane": int(history.lane[j]),
                "site_id": history.site_id[j],
                "segment_id": None if history.segment_id[j] < 0 else int(history.segment_id[j]),
                "value": float(history.values[column][j]),
            }
            for j in evidence.tolist()
        ]
        plate = str(history.plate[latest])
        exceedance = Exceedance(
            kind=self.kind.value,
            subject=f"plate:{plate}",
            segment_id=None if segment < 0 else segment,
            pollutant=pollutant,
            rule="high_emitter",
            threshold_id=None,
            limit_value=limit,
            unit=unit,
            averaging=None,
            source=f"{self._rule.source}; limit: {self._limits.source[row]}",
            severity="warning",
            first_us=int(history.ts_us[int(evidence[0])]),
            last_us=ts,
            value=value,
            peak=float(np.nanmax(values)),
            multiple=(value - limit) / limit,
            vehicle_id=str(history.vehicle_id[latest]),
            readings=len(passes),
            details={
                "plate": plate,
                "plate_colour": history.plate_colour[latest],
                "fuel_type": fuel,
                "limit_confirmed": bool(self._limits.confirmed[row]),
                "consecutive": self._rule.consecutive,
                "window_months": self._rule.window_months,
                "evidence": passes,
            },
        )
        return [exceedance]


def _iso(us: int) -> str:
    return str(np.datetime64(us, "us")) + "Z"
