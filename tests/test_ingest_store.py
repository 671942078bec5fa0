"""The store path against a real PostgreSQL: idempotent inserts, vehicle state, dead letters."""

from __future__ import annotations

import json
import time

import asyncpg
import numpy as np

from telemetry.ingest.decode import Decoder
from telemetry.kinds.contract import Kind, Message
from telemetry.kinds.walkthrough.record import WalkthroughReading, walkthrough_batch
from telemetry.kinds.walkthrough.repository import insert_walkthrough
from telemetry.store.deadletter import DeadLetter, insert_dead_letters, list_dead_letters
from telemetry.store.vehicles import upsert_vehicles

NOW_MS = time.time_ns() // 1_000_000


def _batch(readings: list[tuple[str, dict[str, object]]]):
    msgs = [
        Message(f"telemetry/walkthrough/{v}", json.dumps(r).encode(), time.time_ns() // 1000)
        for v, r in readings
    ]
    d = Decoder(
        {Kind.WALKTHROUGH: WalkthroughReading},
        topic_prefix="telemetry",
        max_payload_bytes=1 << 20,
        max_readings_per_message=100,
    ).decode(msgs)
    assert not d.dead
    return walkthrough_batch(d.rows[Kind.WALKTHROUGH])


def _reading(offset_s: int, **values: object) -> dict[str, object]:
    return {"ts": NOW_MS + offset_s * 1000, "lat": 39.99 + offset_s * 1e-4, "lon": 116.31, **values}


async def _store(pool: asyncpg.Pool, batch, segment: int = -1) -> np.ndarray:
    seg = np.full(len(batch), segment, dtype=np.int64)
    dist = np.where(seg >= 0, 3.5, np.nan)
    async with pool.acquire() as conn, conn.transaction():
        new = await insert_walkthrough(conn, batch, seg, dist)
        fresh = batch.take(new)
        await upsert_vehicles(
            conn,
            "walkthrough",
            fresh.vehicle_id,
            fresh.ts_us,
            fresh.lat,
            fresh.lon,
            fresh.received_us,
        )
    return new


async def test_redelivered_batch_inserts_nothing(pool: asyncpg.Pool) -> None:
    batch = _batch([("car-1", _reading(i, pm25=30 + i)) for i in range(5)])
    first = await _store(pool, batch)
    again = await _store(pool, batch)
    assert first.tolist() == [0, 1, 2, 3, 4]
    assert again.tolist() == []
    assert await pool.fetchval("SELECT count(*) FROM walkthrough_readings") == 5
    assert await pool.fetchval("SELECT readings FROM vehicles WHERE vehicle_id = 'car-1'") == 5


async def test_duplicate_within_one_batch_is_stored_once(pool: asyncpg.Pool) -> None:
    r = _reading(0, pm25=30)
    batch = _batch([("car-1", r), ("car-2", r), ("car-1", r)])
    new = await _store(pool, batch)
    assert new.tolist() == [0, 1]
    assert await pool.fetchval("SELECT count(*) FROM walkthrough_readings") == 2


async def test_stored_row_keeps_values_nulls_extras_and_both_times(pool: asyncpg.Pool) -> None:
    batch = _batch([("car-1", _reading(0, pm25=55.5, co=0.8, flag="C", nh3=3))])
    await _store(pool, batch, segment=7)
    row = await pool.fetchrow("SELECT * FROM walkthrough_readings")
    assert row["pm25"] == 55.5 and abs(row["co"] - 0.8) < 1e-6
    assert row["no2"] is None and row["speed_kmh"] is None
    assert row["flag"] == "C"
    assert row["segment_id"] == 7 and row["snap_distance_m"] == 3.5
    assert row["extra"] == {"nh3": 3}
    assert int(row["ts"].timestamp() * 1000) == NOW_MS
    assert row["stored_at"] >= row["received_at"]


async def test_late_reading_does_not_move_vehicle_position_back(pool: asyncpg.Pool) -> None:
    await _store(pool, _batch([("car-1", _reading(10))]))
    await _store(pool, _batch([("car-1", _reading(-30))]))
    row = await pool.fetchrow("SELECT * FROM vehicles WHERE vehicle_id = 'car-1'")
    assert int(row["last_ts"].timestamp() * 1000) == NOW_MS + 10_000
    assert abs(row["last_lat"] - (39.99 + 10e-4)) < 1e-9
    assert row["readings"] == 2


async def test_dead_letters_keep_raw_bytes_reason_and_are_listed_newest_first(
    pool: asyncpg.Pool,
) -> None:
    letters = [
        DeadLetter(
            1,
            "telemetry/walkthrough/x",
            "walkthrough",
            "x",
            "malformed_json",
            "bad",
            None,
            b"\xff{",
        ),
        DeadLetter(2, "telemetry/bus/y", None, None, "unknown_kind", "kind 'bus'", None, b"{}"),
    ]
    async with pool.acquire() as conn, conn.transaction():
        await insert_dead_letters(conn, letters)
    raw = await pool.fetchval("SELECT payload FROM dead_letters WHERE reason = 'malformed_json'")
    assert bytes(raw) == b"\xff{"
    listed = await list_dead_letters(pool)
    assert [d["reason"] for d in listed] == ["unknown_kind", "malformed_json"]
    only = await list_dead_letters(pool, reason="malformed_json")
    assert len(only) == 1 and only[0]["payload"] == "\ufffd{"
    older = await list_dead_letters(pool, before_id=listed[0]["id"])
    assert [d["reason"] for d in older] == ["malformed_json"]
