"""Console benchmark: the page at ``/`` in headless Chromium against the real service with
50,000 road segments and 2,000 vehicles moving at 1 Hz.

Creates a scratch database with a synthetic grid city (``--segments`` segments of 40 m on
named streets, readings of PM2.5 on a share of them so that the map has colours to compute)
and ``--vehicles`` vehicles of the three kinds. The service runs in this process
(``create_app``, ingest off: the positions come from the vehicles table, which a task here
moves once a second, as the ingest worker would). Debian's ``chromium`` (SwiftShader WebGL, no
GPU) logs in through the form and loads everything. Reported:

- *initial load*: from submitting the login form to the whole network (the geometry listing)
  handed to the map coloured by the statistics of the segments with readings (``network``), to
  the last API answer (``all data``), and to the first frame drawn with every segment's tiles
  (``drawn``); and what each segment request cost, the geometry listing apart; the same again
  for a second login after the live phase, with the service's cache of the network warm;
- *live*: over ``--seconds`` while the positions stream at 1 Hz, the page's frame intervals
  (requestAnimationFrame; 16.7 ms is 60 frames a second) and its long tasks (over 50 ms,
  PerformanceObserver), and how many position updates reached the map.

    .venv/bin/python -m benchmarks.console --segments 50000 --vehicles 2000 --seconds 30

Figures depend on the machine (software WebGL on the CPU here); docs/performance.md quotes
them with the command used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import shutil
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import uvicorn

from api.app import create_app
from telemetry.accounts.passwords import hash_password
from telemetry.accounts.repository import insert_account
from telemetry.db import ensure_database
from telemetry.migrate import migrate
from telemetry.settings import Settings

ADMIN_URL = os.environ.get(
    "TELEMETRY_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
ORIGIN = (116.20, 39.90)
SEGMENT_M = 40.0
KINDS = ("walkthrough", "remote_sensing", "emergency")
#: Degrees per metre near the origin.
DEG_LAT = 1 / 111_320
DEG_LON = 1 / (111_320 * math.cos(math.radians(ORIGIN[1])))

#: Frame intervals and long tasks, collected in the page from the moment it is injected.
PAGE_PROBE = """() => {
  const probe = { frames: [], longTasks: [] };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) probe.longTasks.push(e.duration);
  }).observe({ type: 'longtask', buffered: false });
  let last = performance.now();
  const tick = (now) => { probe.frames.push(now - last); last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  // MapLibre's own work per frame on the main thread (its private _render; a benchmark only).
  probe.renders = [];
  const map = window.telemetryConsole.map;
  const render = map._render;
  map._render = function (...args) {
    const started = performance.now();
    const result = render.apply(this, args);
    probe.renders.push(performance.now() - started);
    return result;
  };
  probe.flushesBefore = window.telemetryConsole.vehicleFlushMs.length;
  window.benchProbe = probe;
}"""


def _grid(segments: int) -> list[tuple[str, str, int, list[list[float]]]]:
    """A square grid city: as many east-west as north-south streets, each cut into 40 m
    segments; ``(name, road_ref, seq, coords)`` per segment."""
    streets = max(2, round(math.sqrt(segments / 2 / 2)) * 2)
    per_street = math.ceil(segments / streets)
    spacing_m = per_street * SEGMENT_M / (streets / 2)
    rows = []
    for street in range(streets):
        east_west = street % 2 == 0
        offset_m = (street // 2) * spacing_m
        for seq in range(per_street):
            if len(rows) == segments:
                return rows
            a, b = seq * SEGMENT_M, (seq + 1) * SEGMENT_M
            ends = [(a, offset_m), (b, offset_m)] if east_west else [(offset_m, a), (offset_m, b)]
            coords = [[ORIGIN[0] + x * DEG_LON, ORIGIN[1] + y * DEG_LAT] for x, y in ends]
            name = f"{'East' if east_west else 'North'} Street {street // 2 + 1}"
            rows.append((name, f"bench-{street}", seq, coords))
    return rows


async def _seed(dsn: str, segments: int, vehicles: int, rng: np.random.Generator) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        grid = _grid(segments)
        await conn.copy_records_to_table(
            "road_segments",
            columns=["source", "road_ref", "seq", "name", "highway", "length_m", "coords",
                     "min_lon", "min_lat", "max_lon", "max_lat"],
            records=[
                ("bench", ref, seq, name, "residential", SEGMENT_M, _json(coords),
                 min(c[0] for c in coords), min(c[1] for c in coords),
                 max(c[0] for c in coords), max(c[1] for c in coords))
                for name, ref, seq, coords in grid
            ],
        )  # fmt: skip
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM road_segments ORDER BY id")]
        # Readings on a fifth of the segments, over the last half hour, at levels spanning
        # every colour class.
        measured = rng.choice(ids, size=len(ids) // 5, replace=False)
        now = datetime.now(UTC)
        records = []
        for i, segment_id in enumerate(measured.tolist()):
            level = float(rng.gamma(2.0, 25.0))
            for k in range(3):
                ts = now - timedelta(seconds=60 + i % 1500, milliseconds=k)
                records.append(
                    (f"bench-wt-{i}", ts, ts, ORIGIN[1], ORIGIN[0], level + k, "N",
                     int(segment_id))
                )  # fmt: skip
        await conn.copy_records_to_table(
            "walkthrough_readings",
            columns=["vehicle_id", "ts", "received_at", "lat", "lon", "pm25", "flag",
                     "segment_id"],
            records=records,
        )  # fmt: skip
        width = max(c[0] for _, _, _, cs in grid for c in cs) - ORIGIN[0]
        height = max(c[1] for _, _, _, cs in grid for c in cs) - ORIGIN[1]
        await conn.copy_records_to_table(
            "vehicles",
            columns=["vehicle_id", "kind", "last_ts", "last_lat", "last_lon",
                     "last_received_at", "readings"],
            records=[
                (f"bench-{i:04d}", KINDS[i % 3], now, ORIGIN[1] + rng.random() * height,
                 ORIGIN[0] + rng.random() * width, now, 1)
                for i in range(vehicles)
            ],
        )  # fmt: skip
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


async def _move_vehicles(dsn: str, stop: asyncio.Event) -> None:
    """Every vehicle a few metres on, once a second, as the ingest worker would record it."""
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            started = time.monotonic()
            await conn.execute(
                "UPDATE vehicles SET last_lat = last_lat + (random() - 0.5) * 0.0002,"
                " last_lon = last_lon + (random() - 0.5) * 0.0002,"
                " last_ts = now(), last_received_at = now()"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (time.monotonic() - started)))
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _scratch_database() -> AsyncIterator[str]:
    name = f"telemetry_console_bench_{uuid.uuid4().hex[:8]}"
    base = ADMIN_URL.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    await ensure_database(dsn)
    try:
        await migrate(dsn, timescaledb="off")
        yield dsn
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _until_serving(server: uvicorn.Server) -> None:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:  # noqa: ASYNC110 (uvicorn has no event)
        await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


async def run(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("Debian's chromium is needed: apt-get install chromium (scripts/setup does)")
    rng = np.random.default_rng(7)
    async with _scratch_database() as dsn:
        t = time.perf_counter()
        await _seed(dsn, args.segments, args.vehicles, rng)
        print(f"seeded {args.segments} segments, {args.vehicles} vehicles in "
              f"{time.perf_counter() - t:.1f} s")  # fmt: skip
        password = secrets.token_urlsafe(16)
        conn = await asyncpg.connect(dsn)
        try:
            await insert_account(
                conn,
                name="bench-officer",
                role="officer",
                password_hash=await hash_password(password),
            )
        finally:
            await conn.close()
        settings = Settings(database_url=dsn, ingest_enabled=False, webhooks_enabled=False)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        stop = asyncio.Event()
        mover = asyncio.create_task(_move_vehicles(dsn, stop))
        try:
            await _until_serving(server)
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path=chromium, headless=True, args=CHROMIUM_ARGS
                )
                page = await browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(args.timeout_s * 1000)
                await _log_in_and_measure(page, port, password, "initial load")
                await page.evaluate(PAGE_PROBE)
                await asyncio.sleep(args.seconds)
                probe = await page.evaluate("() => window.benchProbe")
                flushes = await page.evaluate("() => window.telemetryConsole.vehicleFlushMs")
                flushes = flushes[probe["flushesBefore"] :]
                await page.screenshot(path=args.screenshot) if args.screenshot else None
                await page.close()
                # A second officer (a new token: nothing from the browser's cache, which
                # varies on Authorization) finds the service's network cache warm.
                second = await browser.new_page(viewport={"width": 1600, "height": 1000})
                second.set_default_timeout(args.timeout_s * 1000)
                await _log_in_and_measure(second, port, password, "second login")
                await browser.close()
        finally:
            stop.set()
            await mover
            server.should_exit = True
            await serving
    frames = probe["frames"][1:]
    renders = probe["renders"]
    long_tasks = probe["longTasks"]
    print(f"live, {args.seconds:g} s with {args.vehicles} vehicles moving at 1 Hz:"
          f" {len(flushes)} vehicle layer updates ({len(flushes) / args.seconds:.2f}/s),"
          f" main thread per update: median {_median(flushes):.1f} ms,"
          f" max {max(flushes, default=math.nan):.1f} ms")  # fmt: skip
    print(f"  map frames rendered: {len(renders)}, main thread per frame: median"
          f" {_median(renders):.1f} ms, p95 {_percentile(renders, 95):.1f} ms,"
          f" max {max(renders, default=math.nan):.1f} ms")  # fmt: skip
    print(f"  animation frames: {len(frames)} ({len(frames) / args.seconds:.1f}/s); interval ms"
          f" median {_median(frames):.1f}, p95 {_percentile(frames, 95):.1f},"
          f" max {max(frames, default=math.nan):.1f}")  # fmt: skip
    print(f"  long tasks (> 50 ms): {len(long_tasks)}, total {sum(long_tasks):.0f} ms"
          f" ({sum(long_tasks) / args.seconds / 10:.1f} % of the time),"
          f" max {max(long_tasks, default=0):.0f} ms")  # fmt: skip
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} (CPUs: {os.cpu_count()})")


async def _log_in_and_measure(page: Any, port: int, password: str, label: str) -> None:
    """Logs in on ``page`` and prints how long the map took to load and draw, and what each
    segment request cost."""
    await page.goto(f"http://127.0.0.1:{port}/")
    await page.fill("input[name=username]", "bench-officer")
    await page.fill("input[name=password]", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("body[data-rendered=true]")
    timing = await page.evaluate("() => window.telemetryConsole.timing")
    drawn = await page.evaluate(
        "() => ({segments: window.telemetryConsole.segments.length,"
        " vehicles: window.telemetryConsole.vehicles.size})"
    )
    first_s = (timing["firstSegments"] - timing["login"]) / 1000
    data_s = (timing["ready"] - timing["login"]) / 1000
    drawn_s = (timing["rendered"] - timing["login"]) / 1000
    print(
        f"{label}: {drawn['segments']} segments, {drawn['vehicles']} vehicles:"
        f" network coloured and handed to the map {first_s:.2f} s,"
        f" all data {data_s:.2f} s, drawn {drawn_s:.2f} s"
    )
    requests = await page.evaluate(
        "() => performance.getEntriesByType('resource')"
        ".filter((e) => e.name.includes('/api/v1/segments'))"
        ".map((e) => [e.name, e.responseStart - e.requestStart,"
        " e.responseEnd - e.responseStart, e.decodedBodySize, e.encodedBodySize])"
    )
    for kind, rows in (
        ("geometry listing", [r for r in requests if "/segments/geometry" in r[0]]),
        ("recent statistics", [r for r in requests if "/segments/recent" in r[0]]),
    ):
        print(
            f"  {len(rows)} {kind}: server (request to first byte) median"
            f" {_median([r[1] for r in rows]):.0f} ms, transfer median"
            f" {_median([r[2] for r in rows]):.0f} ms,"
            f" {sum(r[3] for r in rows) / 1e6:.1f} MB decoded,"
            f" {sum(r[4] for r in rows) / 1e6:.1f} MB on the wire"
        )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=50_000)
    parser.add_argument("--vehicles", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="live measurement")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--screenshot", default="", help="save the page here at the end")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
