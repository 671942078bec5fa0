"""Zero/span calibration, pure: the channels a vehicle flags, the mask of registered periods,
and the exclusion reason a calibrated reading is stored with (docs/domain.md §5.9)."""

from __future__ import annotations

import numpy as np

from telemetry.kinds.walkthrough.detection.calibration import (
    CalibrationPeriods,
    calibration_mask,
    flagged_channels,
    mark_calibration,
)
from telemetry.kinds.walkthrough.record import POLLUTANTS

S = 1_000_000


def _objects(*values: object) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def test_a_flag_names_every_channel_or_those_it_maps() -> None:
    channels = flagged_channels(_objects(None, "zero", {"no2": "span", "co": "zero"}))

    assert channels.shape == (3, len(POLLUTANTS))
    assert not channels[0].any()
    assert channels[1].all()
    assert [p for p, hit in zip(POLLUTANTS, channels[2], strict=True) if hit] == ["no2", "co"]


def test_registered_periods_cover_their_vehicle_and_pollutant_start_included_end_excluded() -> None:
    periods = CalibrationPeriods.from_rows(
        [
            {"vehicle_id": "a", "pollutant": None, "starts_us": 5 * S, "ends_us": 15 * S},
            {"vehicle_id": "b", "pollutant": "no2", "starts_us": 0, "ends_us": 100 * S},
        ]
    )
    vehicle = _objects("a", "a", "a", "b", "a", "c")
    ts_us = np.array([0, 5, 10, 10, 15, 10], dtype=np.int64) * S

    mask = calibration_mask(vehicle, ts_us, ("pm25", "no2"), periods)

    assert mask.tolist() == [
        [False, False],
        [True, True],
        [True, True],
        [False, True],
        [False, False],
        [False, False],
    ]


def test_no_periods_mask_nothing() -> None:
    mask = calibration_mask(
        _objects("a"), np.array([0], dtype=np.int64), POLLUTANTS, CalibrationPeriods.empty()
    )

    assert mask.shape == (1, len(POLLUTANTS)) and not mask.any()


def test_calibration_is_the_reason_and_keeps_the_faulty_channels_excluded() -> None:
    calibrated = np.zeros((4, len(POLLUTANTS)), dtype=bool)
    calibrated[0, POLLUTANTS.index("no2")] = True
    calibrated[1, POLLUTANTS.index("co")] = True

    fault, pollutants = mark_calibration(
        _objects("", "flatline", "step", ""),
        _objects("", "no2", "pm25", ""),
        calibrated,
    )

    assert fault.tolist() == ["calibration", "calibration", "step", ""]
    assert pollutants.tolist() == ["no2", "no2,co", "pm25", ""]
