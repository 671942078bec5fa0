"""Analyser lag applied by the detector, through the real worker and database: a vehicle with a
registered 12 s NO2 lag whose plume is reported 12 s late has it judged on the segment where
the air was sampled; the same drive without a lag lands it 12 s (four segments) further on
(docs/domain.md §5.8)."""

from __future__ import annotations

import json
import time

import asyncpg

from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.contract import Message
from telemetry.settings import Settings
from telemetry.store.audit import Actor
from telemetry.store.lags import set_lag

SEGMENTS = 15
STEP_DEG = 0.0003  # a segment: 30.5 m of road running east at 24° N
READINGS = 3 * SEGMENTS  # 1 Hz at 10 m/s: three readings a segment
LAG_S = 12


async def _road(pool: asyncpg.Pool, ref: str, lat: float) -> list[int]:
    """A straight road of 30 m segments from (118.0, ``lat``) eastwards; their ids in order."""
    ids = []
    for k in range(SEGMENTS):
        west, east = 118.0 + k * STEP_DEG, 118.0 + (k + 1) * STEP_DEG
        ids.append(
            await pool.fetchval(
                "INSERT INTO road_segments (source, road_ref, seq, name, highway, length_m,"
                " coords, min_lon, min_lat, max_lon, max_lat)"
                " VALUES ('test', $1, $2, NULL, NULL, 30.5, $3, $4, $5, $6, $5)"
                " RETURNING id",
                ref,
                k,
                [[west, lat], [east, lat]],
                west,
                lat,
                east,
            )
        )
    return ids


def _drive(start_ms: int, lat: float) -> list[dict[str, object]]:
    """NO2 of 900 µg/m³ in the air on the fourth segment (readings 9..11), reported 12 s late
    (readings 21..23, on the eighth); a varying background of 10..12 elsewhere."""
    out = []
    for i in range(READINGS):
        sampled = i - LAG_S  # when the air reported now entered the inlet
        no2 = 900.0 if 9 <= sampled <= 11 else 10.0 + sampled % 3
        lon = 118.0 + STEP_DEG * (i + 0.5) / 3
        out.append({"ts": start_ms + 1000 * i, "lat": lat, "lon": lon, "no2": no2})
    return out


async def test_a_registered_lag_lands_the_plume_on_the_segment_where_it_was_sampled(
    database_url: str, pool: asyncpg.Pool
) -> None:
    # Two vehicles drive alike on two parallel roads (an alert is per road): one with a lag.
    lagged = await _road(pool, "way/lagged", 24.0)
    raw = await _road(pool, "way/raw", 24.01)
    await pool.execute(
        "INSERT INTO vehicles (vehicle_id, kind, last_ts, last_lat, last_lon, last_received_at,"
        " readings) VALUES ('wt-lag', 'walkthrough', now(), 24.0, 118.0, now(), 1)"
    )
    await set_lag(pool, "wt-lag", "no2", LAG_S, by=Actor(None, "cli:test"))
    settings = Settings(database_url=database_url, ingest_enabled=False, detect_clock_margin_s=0)
    worker = IngestWorker(settings, pool)
    await worker.refresh()  # the lag is reference data, loaded here
    await worker.detect()  # the first tick takes the partitions: later arrivals are judged

    start_ms = time.time_ns() // 1_000_000 - 120_000
    drives = {"wt-lag": _drive(start_ms, 24.0), "wt-raw": _drive(start_ms, 24.01)}

    async def upload(first: int, last: int) -> int:
        """Readings first..last of both drives arrive and a tick runs; wt-lag's cursor."""
        now_us = time.time_ns() // 1000
        await worker._flush(
            [
                Message(f"telemetry/walkthrough/{v}", json.dumps(d[first : last + 1]).encode(),
                        now_us)
                for v, d in drives.items()
            ]
        )  # fmt: skip
        await worker.detect()
        judged: int = await pool.fetchval(
            "SELECT judged_us FROM walkthrough_detect_cursors WHERE vehicle_id = 'wt-lag'"
        )
        return (judged // 1000 - start_ms) // 1000  # as a reading's number

    # The lagged vehicle's newest 12 s wait for the values that follow them ...
    assert await upload(0, 32) == 32 - LAG_S
    # ... and it is not read again before its new rows span twice the lag past its cursor.
    assert await upload(33, 39) == 32 - LAG_S
    assert await upload(40, 44) == 44 - LAG_S
    await worker._detector.tick(stopping=True)  # the last worker stopping: judge the rest

    alerts = await pool.fetch(
        "SELECT vehicles, segments FROM alerts WHERE kind = 'walkthrough' AND pollutant = 'no2'"
        " ORDER BY subject"
    )
    # The plume's air was sampled on the fourth segment; without the lag, the eighth.
    assert [(r["vehicles"], r["segments"]) for r in alerts] == [
        (["wt-lag"], [lagged[3]]),
        (["wt-raw"], [raw[7]]),
    ]
    cursors = await pool.fetch(
        "SELECT vehicle_id, judged_us, open_segment_id FROM walkthrough_detect_cursors"
        " ORDER BY vehicle_id"
    )
    newest_us = (start_ms + 1000 * (READINGS - 1)) * 1000
    assert [tuple(r) for r in cursors] == [("wt-lag", newest_us, None), ("wt-raw", newest_us, None)]
