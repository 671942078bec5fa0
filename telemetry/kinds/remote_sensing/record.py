"""Remote-sensing passes: the MQTT record of one measured pass, and its column batch."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from telemetry.clock import EpochMs, Timestamp, ts_us
from telemetry.columns import Columns, FloatArray, IntArray
from telemetry.kinds.contract import KindRows
from telemetry.kinds.remote_sensing.detection import MEASURED_COLUMNS, vsp_kw_per_t

__all__ = [
    "FLOAT_COLUMNS",
    "FUEL_TYPES",
    "RemoteSensingBatch",
    "RemoteSensingRecord",
    "normalise_plate",
    "objects",
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

    ts: Timestamp | EpochMs
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
_PLATE_JUNK = re.compile(r"[\s·•.\-]")


def normalise_plate(plate: str | None) -> str | None:
    """A plate as stored and looked up: upper case, without spaces, dots or dashes."""
    if plate is None:
        return None
    cleaned = _PLATE_JUNK.sub("", plate).upper()
    return cleaned or None


@dataclass(frozen=True, slots=True)
class RemoteSensingBatch(Columns):
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

    def vsp_kw_t(self) -> FloatArray:
        """Vehicle specific power of each pass (NaN where speed, acceleration or slope is
        missing)."""
        return vsp_kw_per_t(self.speed_kmh / 3.6, self.accel_ms2, self.slope_pct / 100.0)

    def values(self, vsp_kw_t: FloatArray) -> dict[str, FloatArray]:
        """The numeric columns by name, with the VSP, as the judgement reads them."""
        out = {name: getattr(self, name) for name in FLOAT_COLUMNS}
        out["vsp_kw_t"] = vsp_kw_t
        return out


def objects(values: Sequence[Any]) -> npt.NDArray[np.object_]:
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
        vehicle_id=objects(rows.vehicle_id),
        ts_us=np.array([ts_us(r.ts) for r in records], dtype=np.int64),
        received_us=np.array(rows.received_us, dtype=np.int64),
        lane=np.array([r.lane for r in records], dtype=np.int64),
        site_id=objects([r.site_id for r in records]),
        plate=objects([normalise_plate(r.plate) for r in records]),
        plate_color=objects(
            [None if r.plate_color is None else str(r.plate_color) for r in records]
        ),
        plate_color_scheme=objects([r.plate_color_scheme for r in records]),
        fuel_type=objects([r.fuel_type for r in records]),
        images=objects([list(r.images) for r in records]),
        extra=objects(rows.extras),
        **floats,
    )
