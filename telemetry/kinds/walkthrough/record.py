"""Walk-through readings: the MQTT record, and the column batch that flows between decode,
checks, snapping and detection.

Times are epoch microseconds UTC (``int64``), measurement time unless the name says otherwise.
Absent numeric values are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Literal, get_args

import msgspec
import numpy as np
import numpy.typing as npt

from telemetry import units as _units
from telemetry.clock import EpochMs, Timestamp, ts_us
from telemetry.columns import Columns, FloatArray, IntArray
from telemetry.kinds.contract import KindRows

__all__ = [
    "DECLARED_UNITS",
    "POLLUTANTS",
    "POLLUTANT_UNITS",
    "WEATHER",
    "WalkthroughBatch",
    "WalkthroughReading",
    "declared_unit_factors",
    "vehicle_unit_factors",
    "walkthrough_batch",
]

#: Walk-through pollutants in the MQTT contract, with their units.
POLLUTANT_UNITS: dict[str, str] = {
    "pm25": "ug/m3",
    "pm10": "ug/m3",
    "no2": "ug/m3",
    "o3": "ug/m3",
    "so2": "ug/m3",
    "co": "mg/m3",
    "tvoc": "ug/m3",
}
POLLUTANTS: tuple[str, ...] = tuple(POLLUTANT_UNITS)
WEATHER: tuple[str, ...] = ("temp_c", "rh_pct", "wind_speed_ms", "wind_dir_deg")

#: Units a reading may declare for a pollutant (``units``, any letter case): volume fractions
#: and mass concentrations.
DECLARED_UNITS: tuple[str, ...] = ("ppb", "ppm", "ug/m3", "mg/m3")
_MASS_MG_M3 = {"ug/m3": 1e-3, "mg/m3": 1.0}
_VOLUME_PPM = {"ppb": 1e-3, "ppm": 1.0}


def _factor(pollutant: str, unit: str) -> float:
    """The factor from ``unit`` to the pollutant's channel unit; NaN when there is none (a
    volume unit needs the molar mass: never for PM, nor TVOC, which has no single one)."""
    target = _MASS_MG_M3[POLLUTANT_UNITS[pollutant]]
    if unit in _MASS_MG_M3:
        return _MASS_MG_M3[unit] / target
    molar_mass = _units.MOLAR_MASS_G_MOL.get(pollutant)
    if molar_mass is None:
        return float("nan")
    return _VOLUME_PPM[unit] * molar_mass / _units.MOLAR_VOLUME_298_L / target


#: (pollutant, declared unit) → factor to the channel unit, at 298.15 K and 101.325 kPa
#: (docs/domain.md §4.4); NaN where the unit does not apply to the pollutant.
UNIT_FACTORS: npt.NDArray[np.float64] = np.array(
    [[_factor(p, u) for u in DECLARED_UNITS] for p in POLLUTANTS], dtype=np.float64
)


@dataclass(frozen=True, slots=True)
class WalkthroughBatch(Columns):
    """Accepted walk-through readings, one element per reading, in arrival order."""

    vehicle_id: npt.NDArray[np.object_]  # str
    ts_us: IntArray
    received_us: IntArray
    lat: FloatArray
    lon: FloatArray
    speed_kmh: FloatArray
    heading_deg: FloatArray
    pm25: FloatArray
    pm10: FloatArray
    no2: FloatArray
    o3: FloatArray
    so2: FloatArray
    co: FloatArray
    tvoc: FloatArray
    temp_c: FloatArray
    rh_pct: FloatArray
    wind_speed_ms: FloatArray
    wind_dir_deg: FloatArray
    flag: npt.NDArray[np.str_]  # '<U1'
    extra: npt.NDArray[np.object_]  # dict | None: unknown fields as sent
    units: npt.NDArray[np.object_]  # dict | None: the units declared, as sent
    # str | dict | None: the vehicle's zero/span calibration flag, as sent. Optional so that
    # code building a batch field by field need not name it (None: no reading flagged).
    calibration: npt.NDArray[np.object_] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.calibration is None:
            none = np.full(self.ts_us.shape[0], None, dtype=object)
            object.__setattr__(self, "calibration", none)

    def pollutant(self, name: str) -> FloatArray:
        if name not in POLLUTANT_UNITS:
            raise KeyError(name)
        values: FloatArray = getattr(self, name)
        return values


Flag = Annotated[str, msgspec.Meta(pattern="^[A-Z]$")]
CalibrationKind = Literal["zero", "span"]
CalibratedPollutant = Literal["pm25", "pm10", "no2", "o3", "so2", "co", "tvoc"]
assert get_args(CalibratedPollutant) == POLLUTANTS
Calibration = CalibrationKind | dict[CalibratedPollutant, CalibrationKind]


class WalkthroughReading(msgspec.Struct, frozen=True):
    """One walk-through reading as the MQTT contract defines it (README, "The contract")."""

    ts: Timestamp | EpochMs
    lat: float
    lon: float
    speed_kmh: float | None = None
    heading_deg: float | None = None
    pm25: float | None = None
    pm10: float | None = None
    no2: float | None = None
    o3: float | None = None
    so2: float | None = None
    co: float | None = None
    tvoc: float | None = None
    temp_c: float | None = None
    rh_pct: float | None = None
    wind_speed_ms: float | None = None
    wind_dir_deg: float | None = None
    flag: Flag = "N"
    units: dict[str, str] | None = None  # pollutant → one of DECLARED_UNITS
    # A zero/span calibration in progress, of every pollutant or per pollutant
    # (docs/domain.md §5.9).
    calibration: Calibration | None = None


_FLOAT_FIELDS = tuple(
    f
    for f in WalkthroughReading.__struct_fields__
    if f not in ("ts", "flag", "units", "calibration")
)


def declared_unit_factors(
    units: npt.NDArray[np.object_],
    extra: npt.NDArray[np.object_] | None = None,
) -> tuple[FloatArray, npt.NDArray[np.object_]]:
    """Per reading and pollutant (in :data:`POLLUTANTS` order), the factor from the declared
    unit to the channel unit (1 where none is declared, NaN where the declaration is refused),
    and per reading why a declaration is refused (``''`` where none is): an unknown pollutant,
    an unknown unit, or a volume unit on a pollutant without a molar mass (PM, TVOC).

    ``units`` holds each reading's declared units (a dict) or None; ``extra`` each reading's
    extra fields (a dict) or None: a unit declared for one of them (an extra channel of a
    portable instrument) is kept as declared when it is one of :data:`DECLARED_UNITS`, and
    not converted.
    """
    n = units.shape[0]
    factors = np.ones((n, len(POLLUTANTS)))
    problems = np.full(n, "", dtype=object)
    declared = np.flatnonzero(units.astype(bool))
    if declared.shape[0] == 0:
        return factors, problems
    # The declarations as flat (reading, pollutant, unit) triples, then array lookups.
    pairs = [(i, k, v) for i in declared.tolist() for k, v in units[i].items()]
    row = np.array([p[0] for p in pairs], dtype=np.intp)
    name = np.array([p[1] for p in pairs], dtype=str)
    unit = np.char.lower(np.array([p[2] for p in pairs], dtype=str))
    channel = _lookup(name, POLLUTANTS)
    code = _lookup(unit, DECLARED_UNITS)
    known = (channel >= 0) & (code >= 0)
    factor = np.where(known, UNIT_FACTORS[np.maximum(channel, 0), np.maximum(code, 0)], np.nan)
    factors[row[known], channel[known]] = factor[known]
    # An extra channel of the reading keeps its (known) unit: nothing to convert.
    carried = np.zeros(len(pairs), dtype=bool)
    if extra is not None:
        carried[:] = [bool(extra[i]) and k in extra[i] for i, k, _ in pairs]
        factor = np.where((channel < 0) & carried & (code >= 0), 1.0, factor)
    choices = ", ".join(DECLARED_UNITS)
    why = np.where(
        (channel < 0) & ~carried,
        np.char.add(
            np.char.add("units: ", name), " is neither a pollutant nor a channel of the reading"
        ),
        np.where(
            code < 0,
            np.char.add(
                np.char.add(np.char.add("units.", name), ": unit must be one of "), choices
            ),
            np.char.add(np.char.add("units.", name), ": a volume unit needs the molar mass"),
        ),
    )
    bad = np.isnan(factor)
    problems[row[bad]] = why[bad].astype(object)
    factors[row[bad & (channel >= 0)], channel[bad & (channel >= 0)]] = np.nan
    return factors, problems


def _keep_extra_units(extra: npt.NDArray[np.object_], units: npt.NDArray[np.object_]) -> None:
    """Store the units a reading declares for its extra channels with them, under the key
    ``units`` (a contract field, so never an extra field's name): the extra-channel series
    returns each value with its unit (docs/domain.md §5.6)."""
    for i in np.flatnonzero(units.astype(bool) & extra.astype(bool)).tolist():
        own = {k: v for k, v in units[i].items() if k in extra[i] and k not in POLLUTANT_UNITS}
        if own:
            extra[i] = {**extra[i], "units": own}


def _declared_pollutants(units: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
    """Per reading and pollutant (in :data:`POLLUTANTS` order), whether the reading declares
    a unit for it itself."""
    declared = np.zeros((units.shape[0], len(POLLUTANTS)), dtype=bool)
    pairs = [(i, k) for i in np.flatnonzero(units.astype(bool)).tolist() for k in units[i]]
    if pairs:
        channel = _lookup(np.array([k for _, k in pairs], dtype=str), POLLUTANTS)
        row = np.array([i for i, _ in pairs], dtype=np.intp)
        declared[row[channel >= 0], channel[channel >= 0]] = True
    return declared


def vehicle_unit_factors(
    vehicle_id: npt.NDArray[np.object_], vehicle_units: Mapping[str, Mapping[str, str]]
) -> FloatArray:
    """Per reading and pollutant (in :data:`POLLUTANTS` order), the factor from the unit its
    vehicle declared at registration to the channel unit (1 where the vehicle declares
    none). ``vehicle_units`` maps a vehicle id to {channel: unit}; channels that are not
    pollutants of this kind (extra channels) are not converted, and a unit that does not
    apply (which the registration refuses) gives NaN."""
    factors = np.ones((vehicle_id.shape[0], len(POLLUTANTS)))
    if not vehicle_units or vehicle_id.shape[0] == 0:
        return factors
    vehicles, inverse = np.unique(vehicle_id.astype(str), return_inverse=True)
    per_vehicle = np.ones((vehicles.shape[0], len(POLLUTANTS)))
    codes = {u: k for k, u in enumerate(DECLARED_UNITS)}
    for v, name in enumerate(vehicles.tolist()):  # per vehicle, not per reading
        for channel, unit in vehicle_units.get(name, {}).items():
            if channel in POLLUTANT_UNITS:
                code = codes.get(unit.lower())
                factor = np.nan if code is None else UNIT_FACTORS[POLLUTANTS.index(channel), code]
                per_vehicle[v, POLLUTANTS.index(channel)] = factor
    return per_vehicle[inverse.reshape(-1)]


def _lookup(values: npt.NDArray[np.str_], table: tuple[str, ...]) -> npt.NDArray[np.intp]:
    """Each value's index in ``table``, -1 where it is not there."""
    order = np.argsort(np.array(table, dtype=str))
    ordered = np.array(table, dtype=str)[order]
    pos = np.minimum(np.searchsorted(ordered, values), len(table) - 1)
    found = ordered[pos] == values
    return np.where(found, order[pos], -1).astype(np.intp)


_float_fields = attrgetter(*_FLOAT_FIELDS)
_ts_of = attrgetter("ts")
_flag_of = attrgetter("flag")
_units_of = attrgetter("units")
_calibration_of = attrgetter("calibration")


def _ts_us(times: list[Any]) -> IntArray:
    """Epoch microseconds of the records' times: epoch milliseconds (the usual) in one
    conversion, RFC 3339 times one by one."""
    if set(map(type, times)) <= {int}:
        return np.array(times, dtype=np.int64) * 1000
    return np.array([ts_us(t) for t in times], dtype=np.int64)


def walkthrough_batch(
    rows: KindRows, vehicle_units: Mapping[str, Mapping[str, str]] | None = None
) -> WalkthroughBatch:
    """Decoded walk-through rows as a column batch (None becomes NaN), pollutants declared in
    other units converted to the channel units (a refused declaration leaves NaN; the checks
    dead-letter the reading).

    ``vehicle_units``: the units each vehicle declared at registration ({vehicle id:
    {channel: unit}}, see :func:`vehicle_unit_factors`), applied to the pollutants a reading
    declares no unit for itself; a reading's own declaration wins. ``units`` stays as sent.
    """
    records: Sequence[WalkthroughReading] = rows.records
    n = len(records)
    # C-level getters over the records (no Python frame per record), then a column each;
    # None becomes NaN in the one conversion of all float fields.
    table = np.array(list(map(_float_fields, records)), dtype=np.float64).reshape(
        n, len(_FLOAT_FIELDS)
    )
    cols = {name: table[:, i].copy() for i, name in enumerate(_FLOAT_FIELDS)}
    extra = np.empty(n, dtype=object)
    extra[:] = rows.extras
    units = np.empty(n, dtype=object)
    units[:] = list(map(_units_of, records))
    factors, _ = declared_unit_factors(units, extra)
    _keep_extra_units(extra, units)
    if vehicle_units:
        by_vehicle = vehicle_unit_factors(np.array(rows.vehicle_id, dtype=object), vehicle_units)
        factors = np.where(_declared_pollutants(units), factors, by_vehicle)
    calibration = np.empty(n, dtype=object)
    calibration[:] = list(map(_calibration_of, records))
    for j, name in enumerate(POLLUTANTS):
        cols[name] *= factors[:, j]
    return WalkthroughBatch(
        vehicle_id=np.array(rows.vehicle_id, dtype=object),
        ts_us=_ts_us(list(map(_ts_of, records))),
        received_us=np.array(rows.received_us, dtype=np.int64),
        flag=np.array(list(map(_flag_of, records)), dtype="<U1"),
        extra=extra,
        units=units,
        calibration=calibration,
        **cols,
    )
