"""Remote-sensing (移动遥感监测车) vehicles: one record per measured pass of a passing vehicle.

A pass is judged valid or invalid against the gates in ``rs_gates`` (VSP, speed, acceleration,
slope, weather), its pollutants against the fuel type's limits in ``rs_limits``, and the
plate against the high-emitter rule in ``rs_rule_params`` (DOMAIN.md §3). All three tables are
seeded with their sources and reloaded by :meth:`RemoteSensingPipeline.refresh`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal, Self

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

from telemetry.detect.exceedance import Exceedance
from telemetry.detect.remote_sensing import (
    MEASURED_COLUMNS,
    RS_POLLUTANTS,
    GateTable,
    LimitTable,
    cst_month,
    find_confirmations,
    judge_limits,
    judge_validity,
    month_start_us,
    vsp_kw_per_t,
)
from telemetry.ingest.decode import KindRows
from telemetry.ingest.validate import Checks, Limits
from telemetry.kinds import Kind
from telemetry.pipelines.base import CheckResult, Outcome, Timestamp, ts_us
from telemetry.readings import FloatArray, IntArray
from telemetry.settings import Settings
from telemetry.snap import SegmentIndex
from telemetry.store import remote_sensing as store
from telemetry.store.readings import upsert_vehicles
from telemetry.store.segments import load_segment_geometries

__all__ = [
    "FUEL_TYPES",
    "Judgement",
    "RemoteSensingBatch",
    "RemoteSensingPipeline",
    "RemoteSensingRecord",
    "RuleParams",
    "check_remote_sensing",
    "normalise_plate",
    "remote_sensing_batch",
]

FuelType = Literal["gasoline", "diesel", "natural_gas", "hybrid", "electric", "unknown"]
FUEL_TYPES: tuple[str, ...] = FuelType.__args__  # type: ignore[attr-defined]

Plate = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Lane = Annotated[int, msgspec.Meta(ge=1, le=99)]
ImageRef = Annotated[str, msgspec.Meta(max_length=512)]


class RemoteSensingRecord(msgspec.Struct, frozen=True):
    """One measured pass as the MQTT contract defines it (topic
    ``telemetry/remote_sensing/{vehicle_id}``, README "Remote-sensing records").

    - ``ts``: measurement time, RFC 3339 with a UTC offset or epoch milliseconds;
    - ``lat``, ``lon``: the measuring vehicle's position, WGS 84 degrees;
    - ``site_id``: monitoring site code when parked at one (e.g. ``A210112001``);
    - ``lane``: lane number, 1–99 (default 1);
    - ``plate``: the passing vehicle's plate as recognised; absent if not recognised;
    - ``plate_color``: plate-colour code in ``plate_color_scheme`` (default ``'vendor'``:
      0 blue, 1 yellow, 2 white, 3 black, 4 green, 5 civil-aviation black);
    - ``fuel_type``: one of :data:`FUEL_TYPES` (default ``'unknown'``: never judged
      against a limit);
    - ``speed_kmh`` (km/h), ``accel_ms2`` (m/s²), ``slope_pct`` (road grade in %, 100 × rise
      / run, negative downhill);
    - ``temp_c`` (°C), ``rh_pct`` (%), ``pressure_kpa`` (kPa), ``wind_speed_ms`` (m/s);
    - ``co2_pct`` (%), ``co_pct`` (%), ``hc_ppm`` (10⁻⁶), ``no_ppm`` (10⁻⁶),
      ``opacity_pct`` (smoke opacity, %), ``ringelmann`` (Ringelmann blackness level, 0–5);
    - ``images``: references (paths or URLs) of the pass's pictures.
    """

    ts: Timestamp | int
    lat: float
    lon: float
    site_id: Short | None = None
    lane: Lane = 1
    plate: Plate | None = None
    plate_color: int | str | None = None
    plate_color_scheme: Short = "vendor"
    fuel_type: FuelType = "unknown"
    speed_kmh: float | None = None
    accel_ms2: float | None = None
    slope_pct: float | None = None
    temp_c: float | None = None
    rh_pct: float | None = None
    pressure_kpa: float | None = None
    wind_speed_ms: float | None = None
    co2_pct: float | None = None
    co_pct: float | None = None
    hc_ppm: float | None = None
    no_ppm: float | None = None
    opacity_pct: float | None = None
    ringelmann: float | None = None
    images: Annotated[list[ImageRef], msgspec.Meta(max_length=16)] = []


FLOAT_COLUMNS: tuple[str, ...] = ("lat", "lon", *MEASURED_COLUMNS)
_OBJECT_COLUMNS = (
    "vehicle_id",
    "site_id",
    "plate",
    "plate_color",
    "plate_color_scheme",
    "fuel_type",
    "images",
    "extra",
)
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
_PLATE_JUNK = re.compile(r"[\s·•.\-]")


def normalise_plate(plate: str | None) -> str | None:
    """A plate as stored and looked up: upper case, without spaces, dots or dashes."""
    if plate is None:
        return None
    cleaned = _PLATE_JUNK.sub("", plate).upper()
    return cleaned or None


@dataclass(frozen=True, slots=True)
class RemoteSensingBatch:
    """Accepted passes, one element per pass, in arrival order. Times are epoch µs UTC,
    absent numbers NaN, absent strings None."""

    vehicle_id: npt.NDArray[np.object_]
    ts_us: IntArray
    received_us: IntArray
    lane: IntArray
    site_id: npt.NDArray[np.object_]
    plate: npt.NDArray[np.object_]
    plate_color: npt.NDArray[np.object_]  # the code as text
    plate_color_scheme: npt.NDArray[np.object_]
    fuel_type: npt.NDArray[np.object_]
    lat: FloatArray
    lon: FloatArray
    speed_kmh: FloatArray
    accel_ms2: FloatArray
    slope_pct: FloatArray
    temp_c: FloatArray
    rh_pct: FloatArray
    pressure_kpa: FloatArray
    wind_speed_ms: FloatArray
    co2_pct: FloatArray
    co_pct: FloatArray
    hc_ppm: FloatArray
    no_ppm: FloatArray
    opacity_pct: FloatArray
    ringelmann: FloatArray
    images: npt.NDArray[np.object_]  # list[str]
    extra: npt.NDArray[np.object_]  # dict | None

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Self:
        """The passes at ``index`` (integer positions or a boolean mask)."""
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def vsp_kw_t(self) -> FloatArray:
        """Vehicle specific power of each pass (NaN where speed, acceleration or slope is
        missing)."""
        return vsp_kw_per_t(self.speed_kmh / 3.6, self.accel_ms2, self.slope_pct / 100.0)

    def values(self, vsp_kw_t: FloatArray) -> dict[str, FloatArray]:
        """The numeric columns by name, with the VSP, as the judgement reads them."""
        out = {name: getattr(self, name) for name in FLOAT_COLUMNS}
        out["vsp_kw_t"] = vsp_kw_t
        return out


def _objects(values: Sequence[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def remote_sensing_batch(rows: KindRows) -> RemoteSensingBatch:
    """Decoded remote-sensing records as a column batch (None becomes NaN for numbers)."""
    records: Sequence[RemoteSensingRecord] = rows.records
    floats = {
        name: np.array([getattr(r, name) for r in records], dtype=np.float64)
        for name in FLOAT_COLUMNS
    }
    return RemoteSensingBatch(
        vehicle_id=_objects(rows.vehicle_id),
        ts_us=np.array([ts_us(r.ts) for r in records], dtype=np.int64),
        received_us=np.array(rows.received_us, dtype=np.int64),
        lane=np.array([r.lane for r in records], dtype=np.int64),
        site_id=_objects([r.site_id for r in records]),
        plate=_objects([normalise_plate(r.plate) for r in records]),
        plate_color=_objects(
            [None if r.plate_color is None else str(r.plate_color) for r in records]
        ),
        plate_color_scheme=_objects([r.plate_color_scheme for r in records]),
        fuel_type=_objects([r.fuel_type for r in records]),
        images=_objects([list(r.images) for r in records]),
        extra=_objects(rows.extras),
        **floats,
    )


def check_remote_sensing(batch: RemoteSensingBatch, *, now_us: int, limits: Limits) -> CheckResult:
    """Plausibility checks: finite numbers, position and clock, physical ranges."""
    checks = Checks(len(batch))
    checks.finite((name, getattr(batch, name)) for name in FLOAT_COLUMNS)
    checks.position_and_clock(batch.ts_us, batch.lat, batch.lon, now_us=now_us, limits=limits)
    checks.ranges((n, getattr(batch, n), lo, hi) for n, lo, hi in _RANGES)
    return checks.result()


_CONSECUTIVE, _WINDOW_MONTHS = 2, 6  # DOMAIN.md §3.2


@dataclass(frozen=True, slots=True)
class RuleParams:
    """The high-emitter rule's parameters (table ``rs_rule_params``)."""

    consecutive: int = _CONSECUTIVE
    window_months: int = _WINDOW_MONTHS

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, int]]) -> Self:
        """From ``(name, value)`` rows; a missing row keeps the national rule's value."""
        values = dict(rows)
        return cls(
            consecutive=int(values.get("consecutive_passes", _CONSECUTIVE)),
            window_months=int(values.get("window_months", _WINDOW_MONTHS)),
        )

    @property
    def source(self) -> str:
        return (
            f"high emitter: {self.consecutive} or more consecutive valid remote-sensing passes "
            f"over the limit within {self.window_months} calendar months "
            "(national rule as adopted by DB11, DOMAIN.md §3.2)"
        )


@dataclass(frozen=True, slots=True)
class Judgement:
    """What :meth:`RemoteSensingPipeline.judge` decided for each pass of a batch."""

    vsp_kw_t: FloatArray
    segment_id: IntArray
    snap_distance_m: FloatArray
    valid: npt.NDArray[np.bool_]
    reason: npt.NDArray[np.object_]
    judged: dict[str, npt.NDArray[np.bool_]]
    over: dict[str, npt.NDArray[np.bool_]]


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
        return Outcome(len(batch), len(new), exceedances)

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
        row = int(self._limits.lookup(pollutant, _objects([fuel]), np.array([ts]))[0])
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
