"""The ingest worker's life cycle against the real broker and database."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from support import eventually, publish

from telemetry.ingest.worker import IngestWorker
from telemetry.roads.importer import import_roads
from telemetry.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


async def test_pass_in_progress_is_judged_at_shutdown(
    database_url: str, pool: asyncpg.Pool, broker: Any
) -> None:
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"life-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        pass_max_gap_s=600,  # the pass cannot close by itself during the test
    )
    await import_roads(settings, ROOT / "data/roads/demo.geojson", segment_length_m=30)
    seg = await pool.fetchrow(
        "SELECT id, coords::text AS coords FROM road_segments ORDER BY length_m DESC LIMIT 1"
    )
    (x0, y0), (x1, y1) = json.loads(seg["coords"])[0], json.loads(seg["coords"])[-1]
    now_ms = time.time_ns() // 1_000_000
    readings = [
        {
            "ts": now_ms - (3 - i) * 1000,
            "lat": y0 + (y1 - y0) * f,
            "lon": x0 + (x1 - x0) * f,
            "pm25": 150,
        }
        for i, f in enumerate((0.3, 0.5, 0.7))
    ]
    worker = IngestWorker(settings, pool)
    await worker.start()
    try:
        await eventually(lambda: _connected(worker))
        publish(broker, "telemetry/walkthrough/car-life", [json.dumps(readings)])

        async def stored() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM walkthrough_readings") == 3)

        await eventually(stored)
        assert await pool.fetchval("SELECT count(*) FROM alerts") == 0  # the pass is still open
    finally:
        await worker.stop()

    alert = await pool.fetchrow(
        "SELECT * FROM alerts WHERE segment_id = $1 AND pollutant = 'pm25' "
        "AND rule = 'pass_screening'",
        seg["id"],
    )
    assert alert is not None
    assert alert["status"] == "open"
    assert alert["last_value"] == 150.0
    assert alert["details"]["pass_readings"] == 3
    assert alert["rules"] == ["reference_ratio"]
    assert alert["confidence"] == "suspected"


async def _connected(worker: IngestWorker) -> bool:
    return worker.mqtt_connected
