"""Emergency (应急监测) vehicles: gas concentrations around incidents, with tiered alerts.

A record (topic ``telemetry/emergency/{vehicle_id}``) carries a position, optional weather and
any number of gas concentrations, each in its own unit. Readings are stored in long form (one
row per substance), assigned to the open incident whose radius and window they fall in, and
compared with the substance's tiers; every tier crossed inside an incident is an alert episode.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal, Self

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

from telemetry.detect.emergency import (
    MOLAR_MASS_G_MOL,
    TierTable,
    assign_incidents,
    convert,
    incident_exceedances,
)
from telemetry.ingest.decode import KindRows
from telemetry.ingest.validate import Checks, Limits
from telemetry.kinds import Kind
from telemetry.pipelines.base import CheckResult, Outcome, Timestamp, ts_us
from telemetry.readings import FloatArray, IntArray
from telemetry.settings import Settings
from telemetry.store.emergency import (
    ReadingRows,
    incidents_during,
    insert_emergency,
    list_substances,
    list_tiers,
)
from telemetry.store.readings import upsert_vehicles

__all__ = ["EmergencyBatch", "EmergencyPipeline", "EmergencyRecord", "Gas", "SubstanceTable"]

log = logging.getLogger(__name__)

SubstanceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Unit = Literal["ppm", "ppb", "mg/m3", "ug/m3"]
Sensor = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class Gas(msgspec.Struct, frozen=True):
    """One concentration: the value in the unit the instrument reports, and its sensor type
    (``PID``, ``EC``, ``IR``, …)."""

    value: float
    unit: Unit
    sensor: Sensor | None = None


class EmergencyRecord(msgspec.Struct, frozen=True):
    """One emergency reading as the MQTT contract defines it (README, "Emergency records and
    incidents"). ``gases`` maps a substance name (or alias) to its concentration."""

    ts: Timestamp | int
    lat: float
    lon: float
    gases: Annotated[dict[SubstanceName, Gas], msgspec.Meta(min_length=1)]
    wind_speed_ms: float | None = None
    wind_dir_deg: float | None = None
    temp_c: float | None = None
    pressure_kpa: float | None = None


_WEATHER = ("wind_speed_ms", "wind_dir_deg", "temp_c", "pressure_kpa")
_RANGES = (
    ("wind_speed_ms", 0.0, 75.0),
    ("wind_dir_deg", 0.0, 360.0),
    ("temp_c", -60.0, 70.0),
    ("pressure_kpa", 30.0, 110.0),
)


@dataclass(frozen=True, slots=True)
class SubstanceTable:
    """Substance names, aliases and molar masses (table ``substances``)."""

    molar_mass: dict[str, float]  # known molar masses only
    canonical: dict[str, str]  # lower-case name or alias → name
    not_converted: dict[str, str]  # name → why it is never converted (its note)

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]]) -> Self:
        """Build from mappings with the columns of table ``substances``."""
        molar_mass: dict[str, float] = {}
        canonical: dict[str, str] = {}
        notes: dict[str, str] = {}
        for row in rows:
            name = str(row["name"])
            canonical[name] = name
            for alias in row.get("aliases") or ():
                canonical.setdefault(str(alias).strip().lower(), name)
            if row.get("molar_mass_g_mol") is not None:
                molar_mass[name] = float(row["molar_mass_g_mol"])
            elif row.get("note"):
                notes[name] = str(row["note"])
        return cls(molar_mass, canonical, notes)

    @classmethod
    def default(cls) -> Self:
        """The built-in molar masses, until the table is loaded."""
        return cls(dict(MOLAR_MASS_G_MOL), {k: k for k in MOLAR_MASS_G_MOL}, {})

    def names(self, sent: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
        """Substance names as stored: lower case, an alias replaced by its substance; a name
        the table does not know is kept (lower case)."""
        if sent.shape[0] == 0:
            return sent
        unique, inverse = np.unique(sent.astype(str), return_inverse=True)
        mapped = []
        for name in unique.tolist():  # per distinct name, not per reading
            key = name.strip().lower()
            mapped.append(self.canonical.get(key, key))
        out = np.empty(len(mapped), dtype=object)
        out[:] = mapped
        return out[inverse.reshape(-1)]

    def molar_masses(self, substance: npt.NDArray[np.object_]) -> FloatArray:
        """The molar mass of each substance (NaN where unknown)."""
        unique, inverse = np.unique(substance.astype(str), return_inverse=True)
        per = np.array([self.molar_mass.get(s, np.nan) for s in unique.tolist()], dtype=float)
        return per[inverse.reshape(-1)] if substance.shape[0] else np.empty(0)

    def conversions(
        self, substance: npt.NDArray[np.object_], unit: npt.NDArray[np.object_]
    ) -> npt.NDArray[np.object_]:
        """Per reading, how its ppm and mg/m³ values were obtained, or why they were not."""
        if substance.shape[0] == 0:
            return np.empty(0, dtype=object)
        volume = np.isin(unit.astype(str), ["ppm", "ppb"])
        keys = np.char.add(substance.astype(str), np.where(volume, "\x1fv", "\x1fm"))
        unique, inverse = np.unique(keys, return_inverse=True)
        texts = []
        for key in unique.tolist():  # per distinct (substance, unit kind)
            name, kind = key.rsplit("\x1f", 1)
            if name in self.molar_mass:
                m = self.molar_mass[name]
                texts.append(
                    f"mg/m3 = ppm x {m:g} / 24.45 (25 °C, 101.325 kPa)"
                    if kind == "v"
                    else f"ppm = mg/m3 x 24.45 / {m:g} (25 °C, 101.325 kPa)"
                )
            else:
                why = self.not_converted.get(name, f"no molar mass known for {name!r}")
                texts.append(f"not converted, stored in the unit sent: {why}")
        out = np.empty(len(texts), dtype=object)
        out[:] = texts
        return out[inverse.reshape(-1)]


_GAS_FIELDS = ("gas_record", "substance", "value", "unit", "sensor")


@dataclass(frozen=True, slots=True)
class EmergencyBatch:
    """Accepted emergency records, one element per record, plus their gases in long form:
    ``gas_record`` is the position of each gas value's record."""

    vehicle_id: npt.NDArray[np.object_]
    ts_us: IntArray
    received_us: IntArray
    lat: FloatArray
    lon: FloatArray
    wind_speed_ms: FloatArray
    wind_dir_deg: FloatArray
    temp_c: FloatArray
    pressure_kpa: FloatArray
    extra: npt.NDArray[np.object_]
    gas_record: npt.NDArray[np.intp]
    substance: npt.NDArray[np.object_]
    value: FloatArray
    unit: npt.NDArray[np.object_]
    sensor: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> EmergencyBatch:
        """The records at ``index`` (positions or a mask) with their gases."""
        keep = np.zeros(len(self), dtype=bool)
        keep[index] = True
        new_position = np.cumsum(keep) - 1
        gas_keep = keep[self.gas_record]
        values = {
            f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name not in _GAS_FIELDS
        }
        values |= {name: getattr(self, name)[gas_keep] for name in _GAS_FIELDS}
        values["gas_record"] = new_position[self.gas_record[gas_keep]].astype(np.intp)
        return EmergencyBatch(**values)


def emergency_batch(rows: KindRows, substances: SubstanceTable) -> EmergencyBatch:
    """Decoded emergency rows as a column batch (None becomes NaN, names canonical)."""
    records: Sequence[EmergencyRecord] = rows.records
    counts = np.array([len(r.gases) for r in records], dtype=np.intp)
    gases = [(name, gas) for r in records for name, gas in r.gases.items()]
    sent = np.empty(len(gases), dtype=object)
    sent[:] = [name for name, _ in gases]
    unit = np.empty(len(gases), dtype=object)
    unit[:] = [g.unit for _, g in gases]
    sensor = np.empty(len(gases), dtype=object)
    sensor[:] = [g.sensor for _, g in gases]
    extra = np.empty(len(records), dtype=object)
    extra[:] = rows.extras
    return EmergencyBatch(
        vehicle_id=np.array(rows.vehicle_id, dtype=object),
        ts_us=np.array([ts_us(r.ts) for r in records], dtype=np.int64),
        received_us=np.array(rows.received_us, dtype=np.int64),
        lat=np.array([r.lat for r in records], dtype=np.float64),
        lon=np.array([r.lon for r in records], dtype=np.float64),
        **{
            name: np.array([getattr(r, name) for r in records], dtype=np.float64)
            for name in _WEATHER
        },
        extra=extra,
        gas_record=np.repeat(np.arange(len(records), dtype=np.intp), counts),
        substance=substances.names(sent),
        value=np.array([g.value for _, g in gases], dtype=np.float64),
        unit=unit,
        sensor=sensor,
    )


def check_emergency(batch: EmergencyBatch, *, now_us: int, limits: Limits) -> CheckResult:
    """Position, clock and weather checks per record; a gas value that is infinite or
    negative rejects its whole record (reason ``non_finite`` / ``out_of_range``)."""
    checks = Checks(len(batch))
    checks.finite((name, getattr(batch, name)) for name in ("lat", "lon", *_WEATHER))
    n = len(batch)
    for name in np.unique(batch.substance.astype(str)).tolist():  # per substance
        of = batch.substance == name
        infinite = np.bincount(batch.gas_record[of & np.isinf(batch.value)], minlength=n) > 0
        checks.mark(infinite, "non_finite", f"gases.{name}.value is not a finite number")
    checks.position_and_clock(batch.ts_us, batch.lat, batch.lon, now_us=now_us, limits=limits)
    checks.ranges((name, getattr(batch, name), lo, hi) for name, lo, hi in _RANGES)
    for name in np.unique(batch.substance.astype(str)).tolist():
        of = batch.substance == name
        negative = np.bincount(batch.gas_record[of & (batch.value < 0)], minlength=n) > 0
        checks.mark(negative, "out_of_range", f"gases.{name}.value is negative")
    return checks.result()


class EmergencyPipeline:
    """Store → assign to incidents → tiers → exceedances for emergency readings.

    Incidents are looked up inside every batch's transaction, so a newly opened incident
    applies from the next batch on; substances and tiers are reloaded by ``refresh`` (every
    ``min(segments_refresh_s, thresholds_refresh_s)`` in the worker).
    """

    kind = Kind.EMERGENCY
    record: type[msgspec.Struct] = EmergencyRecord

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._substances = SubstanceTable.default()
        self._tiers = TierTable.from_rows([], self._substances.molar_mass)

    @property
    def tiers(self) -> TierTable:
        return self._tiers

    async def refresh(self, pool: asyncpg.Pool) -> None:
        substances = SubstanceTable.from_rows(await list_substances(pool))
        self._tiers = TierTable.from_rows(await list_tiers(pool), substances.molar_mass)
        self._substances = substances

    def to_batch(self, rows: KindRows) -> EmergencyBatch:
        return emergency_batch(rows, self._substances)

    def check(self, batch: EmergencyBatch, *, now_us: int, limits: Limits) -> CheckResult:
        return check_emergency(batch, now_us=now_us, limits=limits)

    async def commit(
        self, conn: asyncpg.Connection, batch: EmergencyBatch, *, now_us: int
    ) -> Outcome:
        if len(batch) == 0:
            return Outcome(0, 0)
        incidents = await incidents_during(conn, int(batch.ts_us.min()), int(batch.ts_us.max()))
        match = assign_incidents(
            batch.lat,
            batch.lon,
            batch.ts_us,
            incident_lat=incidents.lat,
            incident_lon=incidents.lon,
            radius_m=incidents.radius_m,
            start_us=incidents.start_us,
            end_us=incidents.end_us,
        )
        found = match.incident >= 0
        record_incident = np.full(len(batch), -1, dtype=np.int64)
        record_incident[found] = incidents.id[match.incident[found]]
        record_open = np.zeros(len(batch), dtype=bool)
        record_open[found] = incidents.open[match.incident[found]]

        r = batch.gas_record
        value_ppm, value_mgm3 = convert(
            batch.value, batch.unit, self._substances.molar_masses(batch.substance)
        )
        rows = ReadingRows(
            vehicle_id=batch.vehicle_id[r],
            ts_us=batch.ts_us[r],
            received_us=batch.received_us[r],
            substance=batch.substance,
            value=batch.value,
            unit=batch.unit,
            value_ppm=value_ppm,
            value_mgm3=value_mgm3,
            conversion=self._substances.conversions(batch.substance, batch.unit),
            sensor=batch.sensor,
            lat=batch.lat[r],
            lon=batch.lon[r],
            wind_speed_ms=batch.wind_speed_ms[r],
            wind_dir_deg=batch.wind_dir_deg[r],
            temp_c=batch.temp_c[r],
            pressure_kpa=batch.pressure_kpa[r],
            incident_id=record_incident[r],
            distance_m=match.distance_m[r],
            bearing_deg=match.bearing_deg[r],
            extra=batch.extra[r],
        )
        new = await insert_emergency(conn, rows)
        new_records = np.unique(r[new])
        await upsert_vehicles(
            conn,
            self.kind.value,
            batch.vehicle_id[new_records],
            batch.ts_us[new_records],
            batch.lat[new_records],
            batch.lon[new_records],
            batch.received_us[new_records],
        )
        # Only new readings in an incident that is still open raise alerts.
        alerting = new[record_open[r[new]]]
        exceedances = incident_exceedances(
            vehicle_id=rows.vehicle_id[alerting],
            ts_us=rows.ts_us[alerting],
            substance=rows.substance[alerting],
            value_ppm=value_ppm[alerting],
            value_mgm3=value_mgm3[alerting],
            incident_id=rows.incident_id[alerting],
            distance_m=rows.distance_m[alerting],
            bearing_deg=rows.bearing_deg[alerting],
            tiers=self._tiers,
        )
        return Outcome(len(batch), int(new_records.shape[0]), exceedances)

    def committed(self, outcome: Outcome) -> None:
        """Nothing to carry forward: tiers apply per reading."""

    async def idle(self, conn: asyncpg.Connection, *, now_us: int) -> Outcome:
        """Nothing falls due without input: tiers apply per reading as it arrives."""
        return Outcome(0, 0)
