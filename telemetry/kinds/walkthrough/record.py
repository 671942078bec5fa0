"""Walk-through readings: the MQTT record, and the column batch that flows between decode,
checks, snapping and detection.

Times are epoch microseconds UTC (``int64``), measurement time unless the name says otherwise.
Absent numeric values are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec.structs import astuple

from telemetry.clock import EpochMs, Timestamp, ts_us
from telemetry.columns import Columns, FloatArray, IntArray
from telemetry.kinds.contract import KindRows

__all__ = [
    "POLLUTANTS",
    "POLLUTANT_UNITS",
    "WEATHER",
    "WalkthroughBatch",
    "WalkthroughReading",
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

    def pollutant(self, name: str) -> FloatArray:
        if name not in POLLUTANT_UNITS:
            raise KeyError(name)
        values: FloatArray = getattr(self, name)
        return values


Flag = Annotated[str, msgspec.Meta(pattern="^[A-Z]$")]


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


_FLOAT_FIELDS = tuple(f for f in WalkthroughReading.__struct_fields__ if f not in ("ts", "flag"))
# The float fields are contiguous in the struct, between ts and flag.
_FLOATS = slice(1, 1 + len(_FLOAT_FIELDS))
assert WalkthroughReading.__struct_fields__[_FLOATS] == _FLOAT_FIELDS


def walkthrough_batch(rows: KindRows) -> WalkthroughBatch:
    """Decoded walk-through rows as a column batch (None becomes NaN)."""
    records: Sequence[WalkthroughReading] = rows.records
    # One C-level conversion of all float fields (None becomes NaN), then a column each.
    table = np.array([astuple(r)[_FLOATS] for r in records], dtype=np.float64).reshape(
        len(records), len(_FLOAT_FIELDS)
    )
    cols = {name: table[:, i].copy() for i, name in enumerate(_FLOAT_FIELDS)}
    extra = np.empty(len(records), dtype=object)
    extra[:] = rows.extras
    return WalkthroughBatch(
        vehicle_id=np.array(rows.vehicle_id, dtype=object),
        ts_us=np.array([ts_us(r.ts) for r in records], dtype=np.int64),
        received_us=np.array(rows.received_us, dtype=np.int64),
        flag=np.array([r.flag for r in records], dtype="<U1"),
        extra=extra,
        **cols,
    )
