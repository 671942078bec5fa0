"""Column-oriented batches of readings: what flows between decode, validate, snap and detect.

Times are epoch microseconds UTC (``int64``), measurement time unless the name says otherwise.
Absent numeric values are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Self

import numpy as np
import numpy.typing as npt

__all__ = [
    "POLLUTANTS",
    "POLLUTANT_UNITS",
    "WEATHER",
    "FloatArray",
    "IntArray",
    "WalkthroughBatch",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

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
class WalkthroughBatch:
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

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Self:
        """The readings at ``index`` (integer positions or a boolean mask)."""
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def pollutant(self, name: str) -> FloatArray:
        if name not in POLLUTANT_UNITS:
            raise KeyError(name)
        values: FloatArray = getattr(self, name)
        return values

    @classmethod
    def empty(cls) -> Self:
        kw: dict[str, np.ndarray] = {}
        for f in fields(cls):
            if f.name in ("vehicle_id", "extra"):
                kw[f.name] = np.empty(0, dtype=object)
            elif f.name in ("ts_us", "received_us"):
                kw[f.name] = np.empty(0, dtype=np.int64)
            elif f.name == "flag":
                kw[f.name] = np.empty(0, dtype="<U1")
            else:
                kw[f.name] = np.empty(0, dtype=np.float64)
        return cls(**kw)
