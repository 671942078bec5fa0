"""Soak: the service at a steady rate for minutes; its memory and latency sampled as it runs.

Creates a scratch database, starts the project's broker on a free loopback port, imports the
demo road network and runs one ``telemetry ingest`` (``--service serve``: ``telemetry serve``).
``--vehicles`` simulated vehicles (each its own account and MQTT connection, the project's
publisher) drive the demo roads past its plume sources, sending ``--rate`` single-reading QoS 1
messages per second in all: one reading per vehicle per measurement second, so with fewer
vehicles than ``--rate`` measurement time runs faster than the clock (readings start far enough
in the past never to be in the future). Every reading carries ``sent_at_ms``.

Every ``--every-s`` seconds it records the service process's resident memory (``/proc``), its
CPU, and for the readings published in the window that ended 5 s earlier: how many are stored
and their publish→stored percentiles (``stored_at`` − ``sent_at_ms``, over a fixed sample of
50 vehicles). Alerts: publish→alert percentiles of the episodes that became visible in each
window (simulators/load.py). At the end it prints the table and two verdicts: memory after
``--warmup-s`` stayed within 10 % of its smallest value, and publish→stored p50 and p99 of the
second half of the run are within 20 % (or 25 ms) of the first half's.

``--decompose`` also prints where each opened episode's publish→alert went: the triggering
reading's sent → received (``received_at``, the service's arrival stamp) → stored
(``stored_at``, at insert) → the episode's ``created_at`` (the start of the detector tick's
transaction that opened it) → visible to the LISTENing reader; and the harness's own delays:
how long after the step's ``sent_at_ms`` stamp its last reading was handed to its connection,
and how late the harness's event loop ran (both bias the figures upwards).

    .venv/bin/python -m benchmarks.soak --rate 5000 --minutes 10
    .venv/bin/python -m benchmarks.soak --rate 2000 --vehicles 2000 --minutes 5   # 1 Hz each
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from benchmarks.harness import (
    DEFAULT_ADMIN_URL,
    Stack,
    cpu_s,
    harness_connection,
    machine_load,
    quiet_clients,
    rss_mb,
    scratch_stack,
    start_service,
    stop_service,
)
from simulators.accounts import fleet_publishers
from simulators.fleet import Fleet, tick_readings
from simulators.load import AlertWatch, Opened, alert_latencies
from simulators.network import load_network
from simulators.plume import Plumes, default_sources
from simulators.publisher import Publisher, encode, topic_for
from simulators.walkthrough import DEFAULT_ROADS
from telemetry.kinds.contract import Kind

PREFIX = "soak-"
SAMPLED_VEHICLES = 50
LAG_S = 5.0  # a window is measured this long after it ends

_SQL_WINDOW = """
SELECT (extract(epoch FROM stored_at) * 1000)::float8 - (extra->>'sent_at_ms')::float8 AS ms
FROM walkthrough_readings
WHERE vehicle_id = ANY($1::text[]) AND ts BETWEEN to_timestamp($2) AND to_timestamp($3)
"""


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    cpu_pct: float
    published: int
    stored: int
    p50_ms: float
    p99_ms: float
    alert_ms: list[float] = field(default_factory=list)


@dataclass
class Steps:
    """When each measurement second was published (wall clock, epoch s), and how long after
    its ``sent_at_ms`` stamp its last reading was handed to its connection (ms)."""

    first_ts_s: int
    published_at: list[float] = field(default_factory=list)
    send_ms: list[float] = field(default_factory=list)

    def window(self, since: float, until: float) -> tuple[int, int] | None:
        """The measurement seconds published in [since, until)."""
        ks = [k for k, t in enumerate(self.published_at) if since <= t < until]
        return (self.first_ts_s + ks[0], self.first_ts_s + ks[-1]) if ks else None


async def publish(
    fleet: Fleet,
    publishers: dict[str, Publisher],
    steps: Steps,
    speedup: float,
    stop: asyncio.Event,
) -> int:
    """One reading per vehicle per measurement second, a second every 1/``speedup`` s of wall
    time; a vehicle whose window is full keeps a backlog. Returns readings published."""
    topics = {v: topic_for("telemetry", v).encode() for v in fleet.vehicle_ids}
    backlog: dict[str, deque[tuple[bytes, bytes]]] = {v: deque() for v in fleet.vehicle_ids}
    started = time.perf_counter()
    k = published = 0
    while not stop.is_set():
        delay = started + k / speedup - time.perf_counter()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            continue
        ts_s = steps.first_ts_s + k
        readings = tick_readings(fleet.step(ts_s), ts_s * 1000)
        stamp_ms = time.time_ns() // 1_000_000
        tail = b',"sent_at_ms":%d}' % stamp_ms
        for vehicle, reading in zip(fleet.vehicle_ids, readings, strict=True):
            queue = backlog[vehicle]
            queue.append((topics[vehicle], encode(reading)[:-1] + tail))
            sent = publishers[vehicle].send(list(queue))
            for _ in range(sent):
                queue.popleft()
            published += sent
        steps.published_at.append(time.time())
        steps.send_ms.append(time.time() * 1000 - stamp_ms)
        k += 1
    return published


async def loop_lag(lags_ms: list[float], every_s: float = 0.01) -> None:
    """How late this process's event loop wakes a task that sleeps ``every_s`` (ms)."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(every_s)
        lags_ms.append((time.perf_counter() - t - every_s) * 1000)


# Per opened episode and vehicle: the reading that triggered it, chosen as alert_latencies
# chooses it (simulators/load.py), with its sent, arrival and insert times, and when the
# episode's row was created (now(): the start of the transaction that opened it).
_SQL_DECOMPOSE = """
WITH opened AS (
    SELECT * FROM unnest($1::bigint[], $2::float8[], $3::text[], $4::timestamptz[])
        AS o(alert_id, visible_ms, vehicle_id, last_seen)
)
SELECT o.alert_id, o.visible_ms, (extract(epoch FROM a.created_at) * 1000)::float8 AS created_ms,
       t.sent_ms, (extract(epoch FROM t.received_at) * 1000)::float8 AS received_ms,
       (extract(epoch FROM t.stored_at) * 1000)::float8 AS stored_ms
FROM opened o
JOIN alerts a ON a.id = o.alert_id
JOIN LATERAL (
    SELECT r.received_at, r.stored_at, (r.extra->>'sent_at_ms')::float8 AS sent_ms
    FROM walkthrough_readings r
    WHERE r.vehicle_id = o.vehicle_id AND r.ts >= o.last_seen
    ORDER BY r.ts LIMIT 2
) t ON true
"""


async def decompose(
    conn: asyncpg.Connection, opened: Mapping[int, Opened]
) -> dict[str, list[float]]:
    """Publish→alert of each episode of ``opened`` split into its stages (ms each)."""
    rows = [(a, o.visible_ms, v, o.last_seen) for a, o in opened.items() for v in o.vehicles]
    if not rows:
        return {}
    found = await conn.fetch(_SQL_DECOMPOSE, *[list(c) for c in zip(*rows, strict=True)])
    # Per (episode, vehicle) the pass's last reading, then the next one if it was stored
    # before the episode became visible; per episode the latest-sent of its vehicles'.
    chosen: dict[int, Any] = {}
    for r in found:
        if r["sent_ms"] is None:
            continue
        best = chosen.get(r["alert_id"])
        if r["stored_ms"] <= r["visible_ms"] and (best is None or r["sent_ms"] > best["sent_ms"]):
            chosen[r["alert_id"]] = r
    stages: dict[str, list[float]] = {
        "sent → received": [], "received → stored": [], "stored → tick opening it": [],
        "tick start → visible": [], "sent → visible": [],
    }  # fmt: skip
    for r in chosen.values():
        stages["sent → received"].append(r["received_ms"] - r["sent_ms"])
        stages["received → stored"].append(r["stored_ms"] - r["received_ms"])
        stages["stored → tick opening it"].append(r["created_ms"] - r["stored_ms"])
        stages["tick start → visible"].append(r["visible_ms"] - r["created_ms"])
        stages["sent → visible"].append(r["visible_ms"] - r["sent_ms"])
    return stages


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan


async def soak(
    stack: Stack, args: argparse.Namespace
) -> tuple[list[Sample], float, dict[str, list[float]]]:
    network = load_network(DEFAULT_ROADS)
    fleet = Fleet(
        network, Plumes(default_sources(network), network), vehicles=args.vehicles, seed=1,
        prefix=PREFIX,
    )  # fmt: skip
    speedup = args.rate / args.vehicles
    duration_s = args.minutes * 60.0
    first_ts_s = int(time.time() - 60 - duration_s * speedup - 60)
    steps = Steps(first_ts_s)
    sampled = list(fleet.vehicle_ids[:SAMPLED_VEHICLES])
    conn = await harness_connection(stack.database_url)
    watch_conn = await harness_connection(stack.database_url)
    proc = start_service(stack, args.service)
    samples: list[Sample] = []
    stages: dict[str, list[float]] = {}
    lags_ms: list[float] = []
    lagging = asyncio.create_task(loop_lag(lags_ms)) if args.decompose else None
    try:
        async with fleet_publishers(
            stack.settings, fleet.vehicle_ids, Kind.WALKTHROUGH, session_expiry_s=600
        ) as publishers:
            print(f"{len(publishers)} vehicles connected; publishing", flush=True)
            async with AlertWatch(watch_conn) as watch:
                stop = asyncio.Event()
                publishing = asyncio.create_task(publish(fleet, publishers, steps, speedup, stop))
                t0 = time.time()
                last_cpu, last_t = cpu_s(proc.pid), t0
                n = 1
                while time.time() - t0 < duration_s:
                    await asyncio.sleep(max(0.0, t0 + n * args.every_s - time.time()))
                    if proc.poll() is not None:
                        raise SystemExit(f"the service stopped; see {stack.workdir}/service.log")
                    now = time.time()
                    cpu = cpu_s(proc.pid)
                    window = steps.window(now - args.every_s - LAG_S, now - LAG_S)
                    published = stored = 0
                    latencies = np.empty(0)
                    if window is not None:
                        rows = await conn.fetch(_SQL_WINDOW, sampled, *window)
                        latencies = np.array([r["ms"] for r in rows], dtype=np.float64)
                        published = (window[1] - window[0] + 1) * len(sampled)
                        stored = len(rows)
                    sample = Sample(
                        now - t0, rss_mb(proc.pid), (cpu - last_cpu) / (now - last_t) * 100,
                        published, stored, _pct(latencies, 50), _pct(latencies, 99),
                    )  # fmt: skip
                    samples.append(sample)
                    _print_sample(sample)
                    last_cpu, last_t = cpu, now
                    n += 1
                stop.set()
                total = await publishing
                await asyncio.gather(*(p.drain(timeout_s=30.0) for p in publishers.values()))
                await asyncio.sleep(LAG_S)
                opened = dict(watch.opened)
        latency = await alert_latencies(conn, opened, list(fleet.vehicle_ids))
        if args.decompose:
            stages = await decompose(conn, opened)
            stages["harness: stamp → step's last send"] = steps.send_ms
            stages["harness: event loop late by"] = lags_ms
        for alert_id, ms in latency.items():
            t = opened[alert_id].visible_ms / 1000.0 - t0
            for sample in samples:
                if sample.t_s - args.every_s <= t < sample.t_s:
                    sample.alert_ms.append(ms)
        return samples, total / duration_s, stages
    finally:
        if lagging is not None:
            lagging.cancel()
        stop_service(proc)
        await conn.close()
        await watch_conn.close()


def _print_sample(s: Sample) -> None:
    print(
        f"  {s.t_s:>6.0f}  {s.rss_mb:>7.1f}  {s.cpu_pct:>5.0f} %  "
        f"{s.stored:>7,d}/{s.published:<7,d}  {s.p50_ms:>8,.0f}  {s.p99_ms:>8,.0f}",
        flush=True,
    )


def report(
    samples: list[Sample], args: argparse.Namespace, rate: float, stages: dict[str, list[float]]
) -> None:
    print(
        f"\n  {'t (s)':>6}  {'RSS MB':>7}  {'CPU':>7}  {'stored/published':>15}"
        f"  {'p50 ms':>8}  {'p99 ms':>8}   publish→alert (episodes opened)"
    )
    for s in samples:
        alerts = np.asarray(s.alert_ms)
        alert = (
            f"p50 {_pct(alerts, 50):,.0f}  p99 {_pct(alerts, 99):,.0f} ms ({alerts.size})"
            if alerts.size
            else "-"
        )
        print(
            f"  {s.t_s:>6.0f}  {s.rss_mb:>7.1f}  {s.cpu_pct:>5.0f} %  "
            f"{s.stored:>7,d}/{s.published:<7,d}  {s.p50_ms:>8,.0f}  {s.p99_ms:>8,.0f}   {alert}"
        )
    after = [s for s in samples if s.t_s > args.warmup_s] or samples
    rss = [s.rss_mb for s in after]
    grew = (max(rss) - min(rss)) / min(rss)
    half = len(after) // 2 or 1
    first, second = after[:half], after[half:] or after

    def drift(key: str) -> tuple[float, float, bool]:
        a = statistics.median(getattr(s, key) for s in first)
        b = statistics.median(getattr(s, key) for s in second)
        return a, b, b <= a * 1.2 or b - a <= 25.0

    p50 = drift("p50_ms")
    p99 = drift("p99_ms")
    alerts = np.asarray([x for s in samples for x in s.alert_ms])
    print(
        f"\npublished {rate:,.0f} readings/s on average from {args.vehicles} vehicles"
        f" ({args.rate / args.vehicles:g} readings per vehicle per second of wall time)"
    )
    print(
        f"memory after {args.warmup_s:.0f} s warm-up: {min(rss):.1f}–{max(rss):.1f} MB, "
        f"spread {grew:.1%} of the smallest: "
        + ("within 10 %" if grew <= 0.10 else "NOT within 10 %")
    )
    print(
        f"publish→stored, first vs second half after warm-up (medians of the windows): "
        f"p50 {p50[0]:,.0f} → {p50[1]:,.0f} ms, p99 {p99[0]:,.0f} → {p99[1]:,.0f} ms: "
        + ("no drift" if p50[2] and p99[2] else "DRIFT")
    )
    print(
        f"publish→alert over the run: p50 {_pct(alerts, 50):,.0f} ms, p99 {_pct(alerts, 99):,.0f}"
        f" ms, max {alerts.max() if alerts.size else math.nan:,.0f} ms ({alerts.size} episodes)"
    )
    if stages:
        print("\nwhere publish→alert went (ms; per episode, and the harness's own delays):")
        for name, values in stages.items():
            v = np.asarray(values, dtype=np.float64)
            print(
                f"  {name:<36} p50 {_pct(v, 50):>7,.0f}  p90 {_pct(v, 90):>7,.0f}"
                f"  p99 {_pct(v, 99):>7,.0f}  max {v.max() if v.size else math.nan:>7,.0f}"
                f"  ({v.size})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5_000.0, help="readings/s (default 5000)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--vehicles", type=int, default=None, help="simulated vehicles (default: rate / 10)"
    )
    parser.add_argument("--every-s", type=float, default=30.0, help="sampling interval")
    parser.add_argument("--warmup-s", type=float, default=None, help="default: 20 %% of the run")
    parser.add_argument("--service", choices=("ingest", "serve"), default="ingest")
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument(
        "--decompose", action="store_true", help="split publish→alert into its stages"
    )
    args = parser.parse_args()
    quiet_clients()
    args.vehicles = args.vehicles or max(1, round(args.rate / 10))
    if args.warmup_s is None:
        args.warmup_s = max(args.every_s, args.minutes * 60 * 0.2)
    with scratch_stack(args.admin_url, label="soak") as stack:
        print(
            f"soak: {args.rate:,.0f} readings/s from {args.vehicles} vehicles for "
            f"{args.minutes:g} min; 1 `telemetry {args.service}`; database {stack.name}; "
            f"{machine_load()}",
            flush=True,
        )
        samples, rate, stages = asyncio.run(soak(stack, args))
    report(samples, args, rate, stages)
    print(machine_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
