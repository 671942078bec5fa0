"""Sensor faults through ingest and the API: the fault is stored per reading, counted per
vehicle and day in ``GET /api/v1/data-quality``, and the faulty channel is left out of the
street map and of the stored background."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import numpy as np
import pytest

from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.contract import Message
from telemetry.kinds.walkthrough.record import POLLUTANTS
from telemetry.kinds.walkthrough.repository import pass_backgrounds
from telemetry.settings import Settings


async def _ingest(database_url: str, pool: asyncpg.Pool, readings: list[dict[str, object]]) -> None:
    settings = Settings(
        database_url=database_url,
        ingest_enabled=False,
        fault_flatline_s=3,
        fault_full_scale={"pm25": 1000.0},
        detect_clock_margin_s=0,
    )
    worker = IngestWorker(settings, pool)
    await worker.refresh()
    now_us = time.time_ns() // 1000
    await worker._flush(
        [Message("telemetry/walkthrough/wt-f", json.dumps(readings).encode(), now_us)]
    )
    # Faults are judged by the detector, on the committed rows in measurement order.
    await worker.detect()


async def test_faults_are_stored_per_reading_and_counted_per_day(
    database_url: str, pool: asyncpg.Pool, viewer_client: httpx.AsyncClient
) -> None:
    start_ms = (time.time_ns() // 1_000_000) - 3_600_000
    no2 = [5.0, 5.0, 5.0, 5.0, 5.0, 6.0]
    pm25 = [10.0, 11.0, 1000.0, 12.0, 13.0, 14.0]
    await _ingest(
        database_url,
        pool,
        [
            {"ts": start_ms + 1000 * i, "lat": 24.5, "lon": 118.1, "no2": n, "pm25": p}
            for i, (n, p) in enumerate(zip(no2, pm25, strict=True))
        ],
    )

    rows = await pool.fetch(
        "SELECT fault, fault_pollutants FROM walkthrough_readings WHERE vehicle_id = 'wt-f'"
        " ORDER BY ts"
    )
    assert [(r["fault"], r["fault_pollutants"]) for r in rows] == [
        (None, None),
        (None, None),
        ("range_limit", ["pm25"]),
        ("flatline", ["no2"]),
        ("flatline", ["no2"]),
        (None, None),
    ]

    response = await viewer_client.get("/api/v1/data-quality", params={"vehicle": "wt-f"})
    assert response.status_code == 200, response.text
    [day] = response.json()["items"]
    counts = {
        k: day[k] for k in ("readings", "flagged", "faulty", "flatline", "range_limit", "step")
    }
    assert counts == {
        "readings": 6,
        "flagged": 0,
        "faulty": 3,
        "flatline": 2,
        "range_limit": 1,
        "step": 0,
    }
    assert response.json()["truncated"] is False


async def test_data_quality_window_is_bounded_and_needs_a_token(
    client: httpx.AsyncClient, anonymous_client: httpx.AsyncClient
) -> None:
    wide = await client.get(
        "/api/v1/data-quality",
        params={"since": "2026-01-01T00:00:00Z", "until": "2026-06-01T00:00:00Z"},
    )
    anonymous = await anonymous_client.get("/api/v1/data-quality")

    assert wide.status_code == 422
    assert anonymous.status_code == 401


@pytest.mark.parametrize("faulty", [True, False])
async def test_a_faulty_channel_is_left_out_of_the_street_map(
    client: httpx.AsyncClient, pool: asyncpg.Pool, faulty: bool
) -> None:
    segment_id = await pool.fetchval(
        "INSERT INTO road_segments (source, road_ref, seq, name, highway, length_m, coords,"
        " min_lon, min_lat, max_lon, max_lat)"
        " VALUES ('test', 'way/f', 0, NULL, NULL, 30.4, $1, 118.0, 24.0, 118.0003, 24.0)"
        " RETURNING id",
        [[118.0, 24.0], [118.0003, 24.0]],
    )
    t = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    await pool.executemany(
        "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, no2, pm25,"
        " segment_id, fault, fault_pollutants) VALUES ('wt-g', $1, $1, 24.0, 118.0001, $2,"
        " 20.0, $3, $4, $5)",
        [
            (t, 10.0, segment_id, None, None),
            (t + timedelta(seconds=1), 90.0, segment_id, "step", ["no2"] if faulty else ["pm25"]),
        ],
    )

    response = await client.get(
        "/api/v1/segments/stats",
        params={
            "pollutant": "no2",
            "since": "2026-11-01T00:00:00Z",
            "until": "2026-11-02T00:00:00Z",
        },
    )

    [item] = response.json()["items"]
    assert (item["median"], item["passes"]) == ((10.0, 1) if faulty else (50.0, 1))


async def test_a_faulty_channel_is_left_out_of_the_background(pool: asyncpg.Pool) -> None:
    now_us = 1_780_000_000 * 1_000_000
    await pool.executemany(
        "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, pm25, no2,"
        " fault, fault_pollutants) VALUES ('wt-b', TIMESTAMPTZ 'epoch' + $1 * INTERVAL"
        " '1 microsecond', now(), 24.5, 118.1, $2, 50.0, $3, $4)",
        [
            (now_us - 3_000_000, 10.0, None, None),
            (now_us - 2_000_000, 20.0, None, None),
            # Stuck at 0 (flat line on pm25): absent for the pm25 background, not for no2.
            (now_us - 1_000_000, 0.0, "flatline", ["pm25"]),
            (now_us, 0.0, "flatline", ["pm25"]),
        ],
    )
    async with pool.acquire() as conn:
        levels = await pass_backgrounds(
            conn,
            np.array(["wt-b"]),
            np.array([now_us], dtype=np.int64),
            window_s=900,
            percentile=0,
            min_samples=2,
        )

    assert levels[0, POLLUTANTS.index("pm25")] == 10.0
    assert levels[0, POLLUTANTS.index("no2")] == 50.0
