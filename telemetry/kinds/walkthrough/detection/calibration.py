"""Zero and span calibration periods (docs/domain.md §5.9): while an analyser is checked
against zero air or a span gas, its channel reads the gas, not the street, and is excluded
from detection and from the street map.

A period is either flagged by the vehicle on its readings (``calibration``: ``"zero"`` or
``"span"`` for every pollutant, or a mapping of pollutant to kind) or registered by an
operator (table ``calibration_periods``). Either way a reading stores the reason in its
exclusion columns: ``fault = 'calibration'`` and the calibrated channels in
``fault_pollutants`` (see :func:`mark_calibration`). Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from telemetry.columns import Columns, IntArray
from telemetry.kinds.walkthrough.record import POLLUTANTS

__all__ = [
    "CALIBRATION",
    "CALIBRATION_KINDS",
    "CalibrationPeriods",
    "calibration_mask",
    "flagged_channels",
    "mark_calibration",
]

BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]

#: The exclusion reason stored on a calibrated reading (column ``fault``).
CALIBRATION = "calibration"
#: What a calibration checks: the analyser's zero (zero air) or its span (a known gas).
CALIBRATION_KINDS: tuple[str, ...] = ("zero", "span")


def flagged_channels(calibration: ObjArray) -> BoolArray:
    """Per reading and pollutant (in :data:`POLLUTANTS` order), whether the vehicle flagged the
    channel as being calibrated: ``calibration`` holds each reading's flag as sent, a kind
    (every pollutant), a mapping of pollutant to kind (those named), or None."""
    n = calibration.shape[0]
    channels = np.zeros((n, len(POLLUTANTS)), dtype=bool)
    if n == 0:
        return channels
    # Truth values taken in C (None and an empty mapping: no flag), so that a batch without
    # flags (nearly every one) costs no Python loop.
    present = np.flatnonzero(calibration.astype(bool))
    if present.shape[0] == 0:
        return channels
    whole = np.array([isinstance(calibration[i], str) for i in present.tolist()], dtype=bool)
    channels[present[whole]] = True
    named = present[~whole]
    pairs = [(i, POLLUTANTS.index(p)) for i in named.tolist() for p in calibration[i]]
    if pairs:
        rows, cols = np.array(pairs, dtype=np.intp).T
        channels[rows, cols] = True
    return channels


@dataclass(frozen=True, slots=True)
class CalibrationPeriods(Columns):
    """Registered calibration periods, one element each: the vehicle, the pollutant (``''``:
    all of them) and the period ``[starts_us, ends_us)``, epoch microseconds UTC."""

    vehicle_id: ObjArray
    pollutant: ObjArray
    starts_us: IntArray
    ends_us: IntArray

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> CalibrationPeriods:
        """From rows with ``vehicle_id``, ``pollutant`` (None: all), ``starts_us``, ``ends_us``."""
        items = list(rows)
        return cls(
            vehicle_id=np.array([r["vehicle_id"] for r in items], dtype=object),
            pollutant=np.array([r["pollutant"] or "" for r in items], dtype=object),
            starts_us=np.array([r["starts_us"] for r in items], dtype=np.int64),
            ends_us=np.array([r["ends_us"] for r in items], dtype=np.int64),
        )


def calibration_mask(
    vehicle_id: ObjArray,
    ts_us: IntArray,
    pollutants: Sequence[str],
    periods: CalibrationPeriods,
) -> BoolArray:
    """Per reading and pollutant of ``pollutants``, whether a registered period of the
    reading's vehicle covers the reading's time (start included, end excluded) for that
    pollutant or for all.

    Vectorized over readings × periods: hand it the periods overlapping the readings' time
    range (``telemetry.store.calibrations.overlapping_periods``), not the whole table.
    """
    n = np.asarray(ts_us).shape[0]
    if n == 0 or len(periods) == 0:
        return np.zeros((n, len(pollutants)), dtype=bool)
    ts = np.asarray(ts_us, dtype=np.int64)[:, None]
    vid = np.asarray(vehicle_id, dtype=str)[:, None]
    covers = (
        (vid == periods.vehicle_id.astype(str)[None, :])
        & (ts >= periods.starts_us[None, :])
        & (ts < periods.ends_us[None, :])
    )  # readings × periods
    which = periods.pollutant.astype(str)
    applies = (which[:, None] == "") | (which[:, None] == np.array(pollutants, dtype=str))
    mask: BoolArray = (covers.astype(np.int64) @ applies.astype(np.int64)) > 0
    return mask


def mark_calibration(
    fault: ObjArray, fault_pollutants: ObjArray, calibrated: BoolArray
) -> tuple[ObjArray, ObjArray]:
    """Each reading's exclusion reason and excluded channels with calibration added:
    ``calibrated`` is readings × pollutants (:data:`POLLUTANTS` order). A calibrated reading's
    reason becomes ``'calibration'`` (a zero or span gas also trips the sensor-fault rules,
    which it explains); its channels are the calibrated ones and any already faulty, so that
    no excluded channel comes back. ``fault_pollutants`` are comma-separated names, ``''``
    for none."""
    hit = calibrated.any(axis=1)
    if not hit.any():
        return fault, fault_pollutants
    names, inverse = np.unique(fault_pollutants.astype(str), return_inverse=True)
    known = np.array(
        [[p in set(s.split(",")) for p in POLLUTANTS] for s in names.tolist()], dtype=bool
    ).reshape(len(names), len(POLLUTANTS))
    channels = known[inverse.reshape(-1)] | calibrated
    bits = channels.astype(np.int64) @ (1 << np.arange(len(POLLUTANTS), dtype=np.int64))
    combos, back = np.unique(bits, return_inverse=True)
    joined = np.array(
        [",".join(q for j, q in enumerate(POLLUTANTS) if int(b) >> j & 1) for b in combos],
        dtype=object,
    )
    code = np.where(hit, CALIBRATION, fault).astype(object)
    pollutants = np.where(hit, joined[back.reshape(-1)], fault_pollutants).astype(object)
    return code, pollutants
