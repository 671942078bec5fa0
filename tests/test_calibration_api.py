"""Calibration periods against the real database: registered by officers over the API and
audited, loaded by time range for the mask, and a reading the vehicle flags as under
calibration stored with that reason and counted in the data-quality report (docs/domain.md
§5.9)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import numpy as np
import pytest

from telemetry.ingest.decode import Decoder
from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.contract import Kind, Message
from telemetry.kinds.walkthrough.detection.calibration import (
    CalibrationPeriods,
    calibration_mask,
)
from telemetry.kinds.walkthrough.record import POLLUTANTS, WalkthroughReading, walkthrough_batch
from telemetry.kinds.walkthrough.repository import insert_walkthrough
from telemetry.settings import Settings
from telemetry.store.calibrations import overlapping_periods

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
S = 1_000_000


@pytest.fixture(autouse=True)
async def _known_vehicles(pool: asyncpg.Pool) -> None:
    """The vehicles these tests configure have sent data (unknown ones are refused: 404)."""
    await pool.execute(
        "INSERT INTO vehicles (vehicle_id, kind, last_ts, last_lat, last_lon, last_received_at,"
        " readings) SELECT v, 'walkthrough', now(), 24.5, 118.1, now(), 1"
        " FROM unnest($1::text[]) AS v",
        ["wt-1", "wt-2", "wt-r"],
    )


def _period(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "kind": "zero",
        "pollutant": "no2",
        "starts_at": T0.isoformat(),
        "ends_at": (T0 + timedelta(minutes=10)).isoformat(),
        "note": "weekly zero check",
    }
    return {**body, **changes}


async def test_an_officer_registers_lists_and_removes_a_calibration_audited(
    officer_client: httpx.AsyncClient, viewer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    created = await officer_client.post("/api/v1/vehicles/wt-1/calibrations", json=_period())
    listed = await viewer_client.get("/api/v1/vehicles/wt-1/calibrations")
    period_id = created.json()["id"]
    deleted = await officer_client.delete(f"/api/v1/vehicles/wt-1/calibrations/{period_id}")
    again = await officer_client.delete(f"/api/v1/vehicles/wt-1/calibrations/{period_id}")
    after = await viewer_client.get("/api/v1/vehicles/wt-1/calibrations")

    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["vehicle_id"], body["pollutant"], body["kind"]) == ("wt-1", "no2", "zero")
    assert body["created_by"] == "test-officer"
    assert listed.json() == [body]
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert after.json() == []
    audit = await pool.fetch(
        "SELECT action, account FROM audit_log WHERE entity = 'calibration_period'"
        " AND entity_id = $1 ORDER BY id",
        str(period_id),
    )
    assert [tuple(r) for r in audit] == [
        ("calibration_period.create", "test-officer"),
        ("calibration_period.delete", "test-officer"),
    ]


async def test_a_calibration_of_every_pollutant_has_a_null_pollutant(
    officer_client: httpx.AsyncClient,
) -> None:
    created = await officer_client.post(
        "/api/v1/vehicles/wt-1/calibrations", json=_period(pollutant=None, kind="span")
    )

    assert created.status_code == 201, created.text
    assert (created.json()["pollutant"], created.json()["kind"]) == (None, "span")


async def test_a_bad_calibration_is_refused_and_viewers_cannot_add_one(
    officer_client: httpx.AsyncClient, viewer_client: httpx.AsyncClient
) -> None:
    backwards = _period(ends_at=(T0 - timedelta(minutes=1)).isoformat())
    too_long = _period(ends_at=(T0 + timedelta(days=2)).isoformat())

    responses = [
        await officer_client.post("/api/v1/vehicles/wt-1/calibrations", json=backwards),
        await officer_client.post("/api/v1/vehicles/wt-1/calibrations", json=too_long),
        await officer_client.post(
            "/api/v1/vehicles/wt-1/calibrations", json=_period(pollutant="nox")
        ),
        await officer_client.post("/api/v1/vehicles/wt-1/calibrations", json=_period(kind="x")),
    ]
    viewer = await viewer_client.post("/api/v1/vehicles/wt-1/calibrations", json=_period())

    assert [r.status_code for r in responses] == [422, 422, 422, 422]
    assert viewer.status_code == 403


async def test_the_periods_overlapping_a_range_make_the_mask(
    officer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    for vehicle, start_min in (("wt-1", 0), ("wt-1", 60), ("wt-2", 0)):
        response = await officer_client.post(
            f"/api/v1/vehicles/{vehicle}/calibrations",
            json=_period(
                starts_at=(T0 + timedelta(minutes=start_min)).isoformat(),
                ends_at=(T0 + timedelta(minutes=start_min + 10)).isoformat(),
            ),
        )
        assert response.status_code == 201
    t0_us = int(T0.timestamp()) * S

    rows = await overlapping_periods(
        pool, ["wt-1", "wt-3"], since_us=t0_us + 5 * 60 * S, until_us=t0_us + 30 * 60 * S
    )
    periods = CalibrationPeriods.from_rows(rows)
    vehicle = np.array(["wt-1", "wt-1", "wt-2"], dtype=object)
    ts_us = np.array([t0_us + 5 * 60 * S, t0_us + 10 * 60 * S, t0_us + 5 * 60 * S])
    mask = calibration_mask(vehicle, ts_us, POLLUTANTS, periods)

    assert [(r["vehicle_id"], r["pollutant"], r["kind"]) for r in rows] == [("wt-1", "no2", "zero")]
    assert rows[0]["starts_us"] == t0_us
    every = await overlapping_periods(pool, None, since_us=t0_us, until_us=t0_us + 60 * 60 * S)
    assert [r["vehicle_id"] for r in every] == ["wt-1", "wt-2"]  # not the one at 60 min
    assert mask[:, POLLUTANTS.index("no2")].tolist() == [True, False, False]
    assert mask.sum() == 1


def _decoded_batch(readings: list[dict[str, object]], now_us: int):
    decoded = Decoder(
        {Kind.WALKTHROUGH: WalkthroughReading},
        topic_prefix="telemetry",
        max_payload_bytes=65536,
        max_readings_per_message=100,
    ).decode([Message("telemetry/walkthrough/wt-c", json.dumps(readings).encode(), now_us)])
    assert decoded.dead == []
    return walkthrough_batch(decoded.rows[Kind.WALKTHROUGH])


async def test_calibrated_channels_are_stored_with_their_reason(pool: asyncpg.Pool) -> None:
    now_us = time.time_ns() // 1000
    start_ms = now_us // 1000 - 3_600_000
    batch = _decoded_batch(
        [
            {"ts": start_ms, "lat": 24.5, "lon": 118.1, "no2": 40.0},
            {"ts": start_ms + 1000, "lat": 24.5, "lon": 118.1, "no2": 0.0, "calibration": "zero"},
            {
                "ts": start_ms + 2000,
                "lat": 24.5,
                "lon": 118.1,
                "no2": 400.0,
                "co": 1.0,
                "calibration": {"no2": "span"},
            },
            {"ts": start_ms + 3000, "lat": 24.5, "lon": 118.1, "no2": 41.0, "pm25": 30.0},
        ],
        now_us,
    )
    n = len(batch)
    # The fourth reading: pm25 in an operator's registered period, and a sensor fault on no2.
    registered = np.zeros((n, len(POLLUTANTS)), dtype=bool)
    registered[3, POLLUTANTS.index("pm25")] = True
    fault = np.array(["", "", "", "step"], dtype=object)
    fault_pollutants = np.array(["", "", "", "no2"], dtype=object)

    async with pool.acquire() as conn, conn.transaction():
        new = await insert_walkthrough(
            conn,
            batch,
            np.full(n, -1, dtype=np.int64),
            np.full(n, np.nan),
            fault=fault,
            fault_pollutants=fault_pollutants,
            calibrated=registered,
        )

    assert len(new) == 4
    rows = await pool.fetch(
        "SELECT no2, fault, fault_pollutants FROM walkthrough_readings WHERE vehicle_id = 'wt-c'"
        " ORDER BY ts"
    )
    assert [(r["fault"], r["fault_pollutants"]) for r in rows] == [
        (None, None),
        ("calibration", list(POLLUTANTS)),
        ("calibration", ["no2"]),
        ("calibration", ["pm25", "no2"]),
    ]
    assert [r["no2"] for r in rows] == [40.0, 0.0, 400.0, 41.0]  # kept as sent


async def test_a_flagged_calibration_through_ingest_is_counted_per_day(
    database_url: str, pool: asyncpg.Pool, viewer_client: httpx.AsyncClient
) -> None:
    settings = Settings(database_url=database_url, ingest_enabled=False)
    worker = IngestWorker(settings, pool)
    await worker.refresh()
    now_us = time.time_ns() // 1000
    start_ms = now_us // 1000 - 3_600_000
    readings = [
        {"ts": start_ms + 1000 * i, "lat": 24.5, "lon": 118.1, "no2": 40.0 + i}
        | ({"calibration": {"no2": "zero"}} if i in (2, 3) else {})
        for i in range(5)
    ]

    await worker._flush(
        [Message("telemetry/walkthrough/wt-d", json.dumps(readings).encode(), now_us)]
    )

    stored = await pool.fetch(
        "SELECT fault, fault_pollutants FROM walkthrough_readings WHERE vehicle_id = 'wt-d'"
        " ORDER BY ts"
    )
    assert [r["fault"] for r in stored] == [None, None, "calibration", "calibration", None]
    assert stored[2]["fault_pollutants"] == ["no2"]
    response = await viewer_client.get("/api/v1/data-quality", params={"vehicle": "wt-d"})
    [day] = response.json()["items"]
    assert (day["readings"], day["calibration"], day["faulty"]) == (5, 2, 0)


async def test_a_registered_period_excludes_the_readings_it_covers_at_ingest(
    database_url: str, pool: asyncpg.Pool, officer_client: httpx.AsyncClient
) -> None:
    now_us = time.time_ns() // 1000
    start_ms = now_us // 1000 - 3_600_000
    starts = datetime.fromtimestamp((start_ms + 2000) / 1000, UTC)
    ends = datetime.fromtimestamp((start_ms + 4000) / 1000, UTC)
    created = await officer_client.post(
        "/api/v1/vehicles/wt-r/calibrations",
        json=_period(kind="span", starts_at=starts.isoformat(), ends_at=ends.isoformat()),
    )
    assert created.status_code == 201, created.text
    worker = IngestWorker(Settings(database_url=database_url, ingest_enabled=False), pool)
    await worker.refresh()  # loads the registered periods
    readings = [
        {"ts": start_ms + 1000 * i, "lat": 24.5, "lon": 118.1, "no2": 40.0 + i, "pm25": 30.0}
        for i in range(5)
    ]

    await worker._flush(
        [Message("telemetry/walkthrough/wt-r", json.dumps(readings).encode(), now_us)]
    )

    stored = await pool.fetch(
        "SELECT fault, fault_pollutants FROM walkthrough_readings WHERE vehicle_id = 'wt-r'"
        " ORDER BY ts"
    )
    # The period covers [start + 2 s, start + 4 s): the third and fourth readings, NO2 only.
    assert [r["fault"] for r in stored] == [None, None, "calibration", "calibration", None]
    assert [r["fault_pollutants"] for r in stored][2:4] == [["no2"], ["no2"]]
