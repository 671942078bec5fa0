"""Declared units: a reading may send a pollutant in ppb, ppm, ug/m3 or mg/m3; it is stored in
the channel's unit, converted at 298.15 K and 101.325 kPa (docs/domain.md §4.4); a unit the
service cannot apply is a dead letter ``unit``, never a guess."""

from __future__ import annotations

import json
import time

import asyncpg
import numpy as np
import pytest

from telemetry.ingest.decode import Decoder
from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.checks import Limits
from telemetry.kinds.contract import Kind, Message
from telemetry.kinds.walkthrough.checks import check_walkthrough
from telemetry.kinds.walkthrough.record import (
    WalkthroughReading,
    declared_unit_factors,
    walkthrough_batch,
)
from telemetry.settings import Settings
from telemetry.units import MOLAR_VOLUME_298_L

NOW_US = 1_795_305_600_000_000  # 2026-11-22T00:00:00Z
LIMITS = Limits(max_future_skew_s=300, max_age_s=7 * 86400)


def _batch(*readings: dict[str, object]):
    payload = json.dumps(
        [{"ts": NOW_US // 1000 - i, "lat": 24.5, "lon": 118.1, **r} for i, r in enumerate(readings)]
    ).encode()
    decoded = Decoder(
        {Kind.WALKTHROUGH: WalkthroughReading},
        topic_prefix="telemetry",
        max_payload_bytes=4096,
        max_readings_per_message=10,
    ).decode([Message("telemetry/walkthrough/car-1", payload, NOW_US)])
    assert decoded.dead == []
    return walkthrough_batch(decoded.rows[Kind.WALKTHROUGH])


def test_molar_volume_of_the_reference_state() -> None:
    # R·T/p at 298.15 K and 101.325 kPa.
    assert abs(MOLAR_VOLUME_298_L - 24.4654037) < 1e-7


def test_declared_units_are_converted_to_the_channel_units() -> None:
    batch = _batch(
        {
            "no2": 40.0,
            "o3": 100.0,
            "so2": 0.01,
            "co": 1.0,
            "pm25": 35.0,
            "units": {"no2": "ppb", "o3": "PPB", "so2": "ppm", "co": "ppm"},
        },
        {
            "no2": 0.05,
            "co": 500.0,
            "pm25": 0.035,
            "tvoc": 300.0,
            "units": {"no2": "mg/m3", "co": "ug/m3", "pm25": "mg/m3", "tvoc": "ug/m3"},
        },
        {"no2": 40.0, "co": 1.0},
    )

    # 46.01 / 24.4654 = 1.880615 µg/m³ per ppb; O3 48.00 → 1.961954; SO2 64.07 → 2618.800
    # µg/m³ per ppm; CO 28.01 → 1.144882 mg/m³ per ppm.
    assert batch.no2.tolist() == pytest.approx([75.224592, 50.0, 40.0], rel=1e-7)
    assert batch.o3[0] == pytest.approx(196.195414, rel=1e-7)
    assert batch.so2[0] == pytest.approx(26.188000, rel=1e-7)
    assert batch.co.tolist() == pytest.approx([1.144882, 0.5, 1.0], rel=1e-6)
    assert batch.pm25.tolist() == pytest.approx([35.0, 35.0, np.nan], nan_ok=True)
    assert batch.tvoc[1] == 300.0
    ok, _, _ = check_walkthrough(batch, now_us=NOW_US, limits=LIMITS)
    assert ok.tolist() == [True, True, True]


@pytest.mark.parametrize(
    ("units", "detail"),
    [
        ({"pm25": "ppb"}, "units.pm25: a volume unit needs the molar mass"),
        ({"tvoc": "ppm"}, "units.tvoc: a volume unit needs the molar mass"),
        ({"no2": "ppt"}, "units.no2: unit must be one of ppb, ppm, ug/m3, mg/m3"),
        ({"no2": ""}, "units.no2: unit must be one of ppb, ppm, ug/m3, mg/m3"),
        ({"nox": "ppb"}, "units: nox is neither a pollutant nor a channel of the reading"),
        ({"temp_c": "ppb"}, "units: temp_c is neither a pollutant nor a channel of the reading"),
    ],
)
def test_a_unit_that_cannot_apply_is_a_dead_letter(units: dict[str, str], detail: str) -> None:
    batch = _batch({"no2": 40.0, "units": {"co": "ppm"}}, {"no2": 40.0, "units": units}, {})

    ok, why, details = check_walkthrough(batch, now_us=NOW_US, limits=LIMITS)

    assert ok.tolist() == [True, False, True]
    assert why.tolist() == ["", "unit", ""]
    assert details[1] == detail


def test_factors_are_one_where_nothing_is_declared() -> None:
    units = np.array([None, {}, {"no2": "ug/m3"}, {"co": "mg/m3", "so2": "bar"}], dtype=object)

    factors, refused = declared_unit_factors(units)

    assert factors[:3].tolist() == np.ones((3, 7)).tolist()
    # so2 refused (NaN); co declared in its own unit (1).
    assert factors[3].tolist() == pytest.approx([1, 1, 1, 1, np.nan, 1, 1], nan_ok=True)
    assert refused.tolist() == ["", "", "", "units.so2: unit must be one of ppb, ppm, ug/m3, mg/m3"]


async def test_no2_in_ppb_is_stored_in_ug_m3_and_a_bad_unit_is_dead_lettered(
    database_url: str, pool: asyncpg.Pool
) -> None:
    worker = IngestWorker(Settings(database_url=database_url, ingest_enabled=False), pool)
    await worker.refresh()
    now_us = time.time_ns() // 1000
    ts = now_us // 1000 - 5000
    good = {"ts": ts, "lat": 24.5, "lon": 118.1, "no2": 40.0, "units": {"no2": "ppb"}}
    bad = {"ts": ts + 1000, "lat": 24.5, "lon": 118.1, "pm25": 1.0, "units": {"pm25": "ppm"}}

    await worker._flush(
        [
            Message("telemetry/walkthrough/wt-u", json.dumps(good).encode(), now_us),
            Message("telemetry/walkthrough/wt-u", json.dumps(bad).encode(), now_us + 1),
        ]
    )

    stored = await pool.fetch(
        "SELECT no2, pm25 FROM walkthrough_readings WHERE vehicle_id = 'wt-u'"
    )
    assert [(r["no2"], r["pm25"]) for r in stored] == [(pytest.approx(75.22459, rel=1e-6), None)]
    dead = await pool.fetch("SELECT reason, detail FROM dead_letters WHERE vehicle_id = 'wt-u'")
    assert [(r["reason"], r["detail"]) for r in dead] == [
        ("unit", "units.pm25: a volume unit needs the molar mass")
    ]


def test_an_extra_channel_keeps_the_unit_the_reading_declares_for_it() -> None:
    batch = _batch(
        {"no2": 40.0, "h2s": 3.5, "units": {"h2s": "ppb", "no2": "ppb"}},
        {"no2": 40.0, "h2s": 3.5, "units": {"h2s": "dB"}},
        {"no2": 40.0, "units": {"h2s": "ppb"}},
    )

    ok, why, details = check_walkthrough(batch, now_us=NOW_US, limits=LIMITS)

    # Kept as sent and stored with its unit; NO2 converted from ppb as always.
    assert batch.extra[0] == {"h2s": 3.5, "units": {"h2s": "ppb"}}
    assert batch.no2[0] == pytest.approx(75.224592, rel=1e-7)
    assert ok.tolist() == [True, False, False]
    assert why.tolist() == ["", "unit", "unit"]
    assert details[1] == "units.h2s: unit must be one of ppb, ppm, ug/m3, mg/m3"
    assert details[2] == "units: h2s is neither a pollutant nor a channel of the reading"
