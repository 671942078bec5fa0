"""Memory check: feed random payloads (valid readings, poison, garbage, random topics) through
one in-process ingest worker and print its resident set size at checkpoints.

Not a timed test: it says whether memory stays bounded as input grows. Creates a scratch
database (dropped afterwards); needs no broker (batches go straight to the worker's flush,
as the batcher would hand them over).

    .venv/bin/python -m benchmarks.memory --count 27000 --every 9000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from telemetry.db import create_pool, ensure_database
from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.contract import Message
from telemetry.migrate import migrate
from telemetry.settings import Settings

KINDS = ("walkthrough", "remote_sensing", "emergency")


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _value(rng: random.Random) -> object:
    return rng.choice(
        [
            None,
            rng.random() * 100,
            rng.randint(-(2**64), 2**64),
            10**16,
            "x" * rng.randint(0, 20),
            [rng.random()],
            {"k": rng.random()},
            True,
        ]
    )


def payload(rng: random.Random, now_ms: int) -> tuple[str, bytes]:
    """One random message: about half valid readings, the rest poison of every sort."""
    kind = rng.choice(KINDS)
    vehicle = f"v{rng.randrange(10_000)}"
    roll = rng.random()
    record: dict[str, object] = {
        "ts": now_ms - rng.randrange(3_600_000),
        "lat": 39.9 + rng.random() / 10,
        "lon": 116.3 + rng.random() / 10,
    }
    if kind == "emergency":
        record["gases"] = {"co": {"value": rng.random() * 5, "unit": rng.choice(["ppm", "PPM"])}}
    if roll < 0.5:
        return f"telemetry/{kind}/{vehicle}", json.dumps(record).encode()
    if roll < 0.7:
        for _ in range(rng.randint(1, 4)):
            record[rng.choice(["ts", "lat", "pm25", "lane", "extra", "gases"])] = _value(rng)
        return f"telemetry/{kind}/{vehicle}", json.dumps(record).encode()
    if roll < 0.8:
        return f"telemetry/{uuid.uuid4().hex[:8]}/{vehicle}", b"{}"  # a kind nobody knows
    if roll < 0.9:
        return f"telemetry/{kind}/{vehicle}", rng.randbytes(rng.randint(0, 200))
    nested = b"[" * rng.randint(1, 20_000)
    return f"telemetry/{kind}/{vehicle}", rng.choice(
        [nested, b'{"ts":1,"lat":1,"lon":2,"lat":3}', b'{"ts":1,"x":"\xff"}', b"1e400"]
    )


async def run(database_url: str, count: int, every: int, batch: int, seed: int) -> None:
    rng = random.Random(seed)
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        settings = Settings(database_url=database_url, ingest_enabled=False)
        worker = IngestWorker(settings, pool)
        await worker.refresh()
        gc.collect()
        print(f"RSS before: {rss_mb():.0f} MB")
        sent = 0
        while sent < count:
            now_ms = time.time_ns() // 1_000_000
            now_us = now_ms * 1000
            n = min(batch, count - sent)
            messages = [Message(*payload(rng, now_ms), now_us + i) for i in range(n)]
            await worker._flush(messages)
            sent += n
            if sent % every == 0 or sent == count:
                gc.collect()
                print(f"RSS after {sent:>7,} payloads: {rss_mb():.0f} MB")
        counts = await pool.fetchrow(
            "SELECT (SELECT count(*) FROM dead_letters) AS dead,"
            " (SELECT count(*) FROM walkthrough_readings) + (SELECT count(*) FROM rs_passes)"
            " + (SELECT count(DISTINCT (vehicle_id, ts)) FROM emergency_readings) AS stored"
        )
        print(f"stored {counts['stored']:,} records; dead-lettered {counts['dead']:,}")
    finally:
        await pool.close()


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=27_000, help="payloads to feed")
    parser.add_argument("--every", type=int, default=9_000, help="print RSS every N payloads")
    parser.add_argument("--batch", type=int, default=500, help="messages per batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "TELEMETRY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    name = f"telemetry_mem_{uuid.uuid4().hex[:8]}"
    database_url = urlunsplit(urlsplit(args.admin_url)._replace(path=f"/{name}"))

    async def go() -> None:
        await ensure_database(database_url)
        await migrate(database_url)
        try:
            await run(database_url, args.count, args.every, args.batch, args.seed)
        finally:
            await _drop(args.admin_url, name)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
