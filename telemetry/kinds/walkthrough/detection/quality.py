"""Which readings are fit for detection, and why the others are not."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from telemetry.columns import IntArray
from telemetry.geo import haversine_m
from telemetry.kinds.walkthrough.detection.passes import vehicle_time_order
from telemetry.kinds.walkthrough.record import WalkthroughBatch

__all__ = ["REASONS", "BoolArray", "ObjArray", "quality_mask"]

BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]

#: Mean Earth radius (IUGG), metres.

#: The reason codes, in the order they take precedence when several apply to one reading.
REASONS: tuple[str, ...] = ("flag", "unsnapped", "speed_jump", "duplicate_ts")


def quality_mask(
    batch: WalkthroughBatch, segment_id: IntArray, *, max_speed_kmh: float
) -> tuple[BoolArray, ObjArray]:
    """True where a reading is usable for detection, and a reason code for every other one.

    The reason is ``''`` for a usable reading, otherwise the first that applies of:

    - ``'flag'``: the HJ 212 data flag is not ``'N'`` (instrument normal);
    - ``'unsnapped'``: no road segment within tolerance (``segment_id == -1``);
    - ``'speed_jump'``: the distance from the same vehicle's previous reading (by measurement
      time within this batch) over the time between them implies more than ``max_speed_kmh``,
      a GPS jump. A lone outlier also marks the reading after it, which jumps back;
    - ``'duplicate_ts'``: an earlier reading in the batch has the same (vehicle, ts); the first
      one in arrival order is kept and is the one later readings are compared with.

    A vehicle's first reading in the batch has no previous reading and is never a speed jump.
    """
    n = len(batch)
    segment_id = np.asarray(segment_id, dtype=np.int64)
    if segment_id.shape != (n,):
        raise ValueError(f"segment_id has shape {segment_id.shape}, the batch has {n} readings")
    reason = np.full(n, "", dtype=object)
    if n == 0:
        return np.ones(0, dtype=bool), reason

    order, codes = vehicle_time_order(batch.vehicle_id, batch.ts_us)
    code_sorted = codes[order]
    ts_sorted = batch.ts_us[order]
    same_vehicle = np.zeros(n, dtype=bool)
    same_vehicle[1:] = code_sorted[1:] == code_sorted[:-1]
    duplicate_sorted = np.zeros(n, dtype=bool)
    duplicate_sorted[1:] = same_vehicle[1:] & (ts_sorted[1:] == ts_sorted[:-1])

    # Speeds are measured along each vehicle's track without its duplicates.
    track = order[~duplicate_sorted]
    jump = np.zeros(n, dtype=bool)
    if track.shape[0] > 1:
        prev, cur = track[:-1], track[1:]
        follows = codes[prev] == codes[cur]
        dt_s = (batch.ts_us[cur] - batch.ts_us[prev]) / 1e6
        distance_m = haversine_m(batch.lat[prev], batch.lon[prev], batch.lat[cur], batch.lon[cur])
        speed_kmh = np.divide(distance_m * 3.6, dt_s, out=np.zeros_like(distance_m), where=dt_s > 0)
        jump[cur] = follows & (speed_kmh > max_speed_kmh)

    duplicate = np.zeros(n, dtype=bool)
    duplicate[order] = duplicate_sorted
    conditions = {
        "flag": batch.flag != "N",
        "unsnapped": segment_id < 0,
        "speed_jump": jump,
        "duplicate_ts": duplicate,
    }
    for code in reversed(REASONS):
        reason[conditions[code]] = code
    usable: BoolArray = np.asarray(reason == "", dtype=bool)
    return usable, reason
