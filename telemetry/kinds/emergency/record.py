"""Emergency readings: the MQTT record (a position, weather and any number of gases, each in
its own unit), the substance table that names them, and the column batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Annotated, Any, Self

import msgspec
import numpy as np
import numpy.typing as npt

from telemetry.clock import EpochMs, Timestamp, ts_us
from telemetry.columns import Columns, FloatArray, IntArray
from telemetry.kinds.contract import KindRows
from telemetry.kinds.emergency.detection import MOLAR_MASS_G_MOL, UNITS

__all__ = [
    "WEATHER",
    "EmergencyBatch",
    "EmergencyRecord",
    "Gas",
    "SubstanceTable",
    "emergency_batch",
]

SubstanceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: One of :data:`UNITS`, in any letter case (``PPM``, ``Mg/m3``); stored in lower case.
Unit = Annotated[str, msgspec.Meta(pattern="(?i)^(" + "|".join(UNITS) + ")$")]
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

    ts: Timestamp | EpochMs
    lat: float
    lon: float
    gases: Annotated[dict[SubstanceName, Gas], msgspec.Meta(min_length=1)]
    wind_speed_ms: float | None = None
    wind_dir_deg: float | None = None
    temp_c: float | None = None
    pressure_kpa: float | None = None


WEATHER = ("wind_speed_ms", "wind_dir_deg", "temp_c", "pressure_kpa")


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
class EmergencyBatch(Columns):
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


def _lower(values: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """Lower-cased strings, computed once per distinct value."""
    if values.shape[0] == 0:
        return values
    unique, inverse = np.unique(values.astype(str), return_inverse=True)
    out = np.empty(unique.shape[0], dtype=object)
    out[:] = [u.lower() for u in unique.tolist()]
    return out[inverse.reshape(-1)]


def emergency_batch(rows: KindRows, substances: SubstanceTable) -> EmergencyBatch:
    """Decoded emergency rows as a column batch (None becomes NaN, names canonical)."""
    records: Sequence[EmergencyRecord] = rows.records
    counts = np.array([len(r.gases) for r in records], dtype=np.intp)
    gases = [(name, gas) for r in records for name, gas in r.gases.items()]
    sent = np.empty(len(gases), dtype=object)
    sent[:] = [name for name, _ in gases]
    unit = _lower(np.array([g.unit for _, g in gases], dtype=object))
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
            for name in WEATHER
        },
        extra=extra,
        gas_record=np.repeat(np.arange(len(records), dtype=np.intp), counts),
        substance=substances.names(sent),
        value=np.array([g.value for _, g in gases], dtype=np.float64),
        unit=unit,
        sensor=sensor,
    )
