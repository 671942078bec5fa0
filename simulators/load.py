"""Load test: publish pre-generated readings at a target rate, then measure what got stored.

Every message holds one reading of a vehicle named for this run, so no two messages share a
``(vehicle_id, ts)`` key and nothing is deduplicated. Each reading carries ``sent_at_ms`` (epoch
milliseconds when it was handed to the socket) as an extra field; the ingest service keeps it
in ``extra``, and the database stamps ``stored_at`` at insert. Their difference is the
publish→stored latency.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg
import numpy as np

from simulators.accounts import fleet_publishers, remove_vehicles
from simulators.fleet import Fleet, tick_readings
from simulators.network import FloatArray, RoadNetwork
from simulators.plume import Plumes, Source
from simulators.publisher import Publisher, encode, topic_for
from telemetry.errors import TelemetryError, ValidationError
from telemetry.kinds.contract import Kind
from telemetry.settings import Settings

__all__ = [
    "LoadPlan",
    "LoadReport",
    "StoredReadings",
    "compute_report",
    "fetch_stored",
    "plan_load",
    "run_load",
    "stamp",
    "wait_until_stored",
]

log = logging.getLogger(__name__)

_MAX_SPAN_S = 6 * 24 * 3600  # stay inside the ingest service's accepted age of readings
_SLICE_S = 0.01

# The measurement reads the ingest service's tables directly; these queries belong to this
# test harness alone, so they live with it rather than in telemetry.store.
_SQL_STORED_COUNT = "SELECT count(*) FROM walkthrough_readings WHERE vehicle_id = ANY($1::text[])"
_SQL_STORED_TIMES = """
SELECT count(*) - count(DISTINCT (vehicle_id, ts)) AS duplicates,
       coalesce(array_agg((extract(epoch FROM stored_at) * 1000)::float8), '{}') AS stored_at_ms,
       coalesce(array_agg(coalesce((extra->>'sent_at_ms')::float8, 'NaN')), '{}') AS sent_at_ms
FROM walkthrough_readings
WHERE vehicle_id = ANY($1::text[])
"""
_SQL_DEAD_LETTERS = """
SELECT reason, count(*) FROM dead_letters WHERE vehicle_id = ANY($1::text[]) GROUP BY reason
"""


@dataclass(frozen=True, slots=True)
class LoadReport:
    """The outcome of a load test."""

    published: int
    acknowledged: int
    stored: int
    missing: int
    duplicates: int
    publish_s: float
    publish_rate: float  # readings/s handed to the broker
    sustained_rate: float  # stored / (last stored_at − first sent_at), readings/s
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    dead_letters: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        dead = ", ".join(f"{k}={v}" for k, v in sorted(self.dead_letters.items())) or "none"
        rows = [
            ("published", f"{self.published:,d} in {self.publish_s:.2f} s"
                          f" ({self.publish_rate:,.0f} readings/s)"),
            ("acknowledged (PUBACK)", f"{self.acknowledged:,d}"),
            ("stored", f"{self.stored:,d}"),
            ("missing", f"{self.missing:,d}"),
            ("duplicates", f"{self.duplicates:,d} (0 expected)"),
            ("dead letters", dead),
            ("sustained", f"{self.sustained_rate:,.0f} readings/s"
                          " (stored / (last stored − first sent))"),
            ("latency publish→stored", f"p50 {self.latency_p50_ms:,.1f} ms"
                                       f"  p99 {self.latency_p99_ms:,.1f} ms"
                                       f"  max {self.latency_max_ms:,.1f} ms"),
        ]  # fmt: skip
        return "load test report\n" + "\n".join(f"  {k:<24}{v}" for k, v in rows)


def compute_report(
    *,
    published: int,
    acknowledged: int,
    publish_started_ms: float,
    publish_finished_ms: float,
    sent_at_ms: FloatArray,
    stored_at_ms: FloatArray,
    duplicates: int = 0,
    dead_letters: dict[str, int] | None = None,
) -> LoadReport:
    """The report from what was published and, per stored row, when it was sent and stored.

    Percentiles interpolate linearly between ranks (numpy's default). Rows without a
    ``sent_at_ms`` (NaN) count as stored but not in the latencies.
    """
    sent = np.asarray(sent_at_ms, dtype=np.float64)
    stored_at = np.asarray(stored_at_ms, dtype=np.float64)
    stored = int(sent.shape[0])
    timed = ~np.isnan(sent)
    latency = stored_at[timed] - sent[timed]
    if latency.size:
        p50, p99 = (float(v) for v in np.percentile(latency, [50.0, 99.0]))
        worst = float(latency.max())
        span_s = (float(stored_at.max()) - float(sent[timed].min())) / 1000.0
        sustained = stored / span_s if span_s > 0 else math.inf
    else:
        p50 = p99 = worst = math.nan
        sustained = 0.0
    publish_s = max(publish_finished_ms - publish_started_ms, 0.0) / 1000.0
    return LoadReport(
        published=published,
        acknowledged=acknowledged,
        stored=stored,
        missing=max(published - (stored - duplicates), 0),
        duplicates=duplicates,
        publish_s=publish_s,
        publish_rate=published / publish_s if publish_s > 0 else 0.0,
        sustained_rate=sustained,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        latency_max_ms=worst,
        dead_letters=dict(dead_letters or {}),
    )


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Pre-serialized messages for each publisher: (topic, payload up to ``"sent_at_ms":``)."""

    vehicle_ids: tuple[str, ...]
    per_publisher: tuple[list[tuple[bytes, bytes]], ...]

    @property
    def count(self) -> int:
        return sum(len(m) for m in self.per_publisher)


def plan_load(
    network: RoadNetwork,
    sources: list[Source],
    *,
    count: int,
    vehicles: int,
    publishers: int,
    seed: int,
    prefix: str,
    topic_prefix: str,
    end_s: float,
) -> LoadPlan:
    """Generate ``count`` single-reading messages, one per (vehicle, second), whose last second
    is ``end_s``; vehicle ``k`` is published by publisher ``k % publishers`` so each vehicle's
    readings go out in order over one connection."""
    if count < 1 or vehicles < 1 or publishers < 1:
        raise ValidationError("count, vehicles and publishers must be at least 1")
    ticks = math.ceil(count / vehicles)
    if ticks > _MAX_SPAN_S:
        raise ValidationError(
            f"{count} readings from {vehicles} vehicles span {ticks} s; use more vehicles"
        )
    fleet = Fleet(network, Plumes(sources, network), vehicles=vehicles, seed=seed, prefix=prefix)
    topics = [topic_for(topic_prefix, v).encode() for v in fleet.vehicle_ids]
    per_publisher: tuple[list[tuple[bytes, bytes]], ...] = tuple([] for _ in range(publishers))
    start_s = float(int(end_s)) - (ticks - 1)
    left = count
    for k in range(ticks):
        ts_s = start_s + k
        tick = fleet.step(ts_s)
        # Message bytes are built here, before the clock starts, so publishing only stamps.
        for v, reading in enumerate(tick_readings(tick, int(ts_s) * 1000)[:left]):
            per_publisher[v % publishers].append(
                (topics[v], encode(reading)[:-1] + b',"sent_at_ms":')
            )
        left -= min(left, vehicles)
    return LoadPlan(fleet.vehicle_ids, per_publisher)


async def _pace(clients: Mapping[bytes, Publisher], messages: list[tuple[bytes, bytes]],
                rate: float, started: float, stop: asyncio.Event) -> None:  # fmt: skip
    """Publish ``messages`` at ``rate``/s from ``started`` (perf_counter), in slices, each over
    its vehicle's own connection (``clients[topic]``), in order."""
    sent, total = 0, len(messages)
    while sent < total and not stop.is_set():
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        tail = b"%d}" % (time.time_ns() // 1_000_000)
        blocked = None
        while sent < due:
            topic, head = messages[sent]
            client = clients[topic]
            if not client.capacity:
                blocked = client
                break
            client.send(((topic, head + tail),))
            sent += 1
        if blocked is not None:
            await blocked.wait_for_space(_SLICE_S)
        else:
            await asyncio.sleep(_SLICE_S)


async def wait_until_stored(
    conn: asyncpg.Connection,
    vehicle_ids: list[str],
    expected: int,
    *,
    settle_s: float = 15.0,
    max_wait_s: float = 600.0,
) -> int:
    """Poll the stored count of these vehicles' readings until it reaches ``expected``, stops
    growing for ``settle_s`` or ``max_wait_s`` passes; returns the last count."""
    deadline = time.monotonic() + max_wait_s
    last, last_change = -1, time.monotonic()
    while True:
        stored = int(await conn.fetchval(_SQL_STORED_COUNT, vehicle_ids))
        now = time.monotonic()
        if stored != last:
            last, last_change = stored, now
            log.info("stored %d of %d", stored, expected)
        if stored >= expected or now - last_change >= settle_s or now >= deadline:
            return stored
        await asyncio.sleep(0.5)


@dataclass(frozen=True, slots=True)
class StoredReadings:
    """Per stored row of the test's vehicles: when it was sent and when it was stored."""

    sent_at_ms: FloatArray
    stored_at_ms: FloatArray
    duplicates: int
    dead_letters: dict[str, int]


async def fetch_stored(conn: asyncpg.Connection, vehicle_ids: list[str]) -> StoredReadings:
    """What the database holds for these vehicles, for :func:`compute_report`."""
    row = await conn.fetchrow(_SQL_STORED_TIMES, vehicle_ids)
    dead = await conn.fetch(_SQL_DEAD_LETTERS, vehicle_ids)
    return StoredReadings(
        sent_at_ms=np.array(row["sent_at_ms"], dtype=np.float64),
        stored_at_ms=np.array(row["stored_at_ms"], dtype=np.float64),
        duplicates=int(row["duplicates"]),
        dead_letters={r["reason"]: int(r["count"]) for r in dead},
    )


def stamp(messages: list[tuple[bytes, bytes]], sent_at_ms: int) -> list[tuple[bytes, bytes]]:
    """Complete planned messages with their ``sent_at_ms``."""
    tail = b"%d}" % sent_at_ms
    return [(topic, head + tail) for topic, head in messages]


async def run_load(
    settings: Settings,
    network: RoadNetwork,
    sources: list[Source],
    *,
    rate: float,
    count: int,
    vehicles: int,
    publishers: int,
    seed: int,
    prefix: str,
    stop: asyncio.Event,
    settle_s: float = 15.0,
    max_wait_s: float = 600.0,
) -> LoadReport:
    """Publish ``count`` readings at ``rate``/s, each vehicle over its own connection as its own
    (simulated) account, paced by ``publishers`` tasks; wait for the ingest service to store
    them, and report counts, rates and latencies. The run's accounts are removed at the end."""
    if rate <= 0:
        raise ValidationError("rate must be positive")
    run = secrets.token_hex(3)
    log.info("generating %d readings for %d vehicles (run %s)", count, vehicles, run)
    plan = plan_load(
        network,
        sources,
        count=count,
        vehicles=vehicles,
        publishers=publishers,
        seed=seed,
        prefix=f"{prefix}{run}-",
        topic_prefix=settings.mqtt_topic_prefix,
        end_s=time.time() - 60.0,
    )
    vehicle_ids = list(plan.vehicle_ids)
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TelemetryError(f"cannot connect to the database: {exc}") from exc
    try:
        try:
            async with fleet_publishers(
                settings, vehicle_ids, Kind.WALKTHROUGH, session_expiry_s=600
            ) as clients:
                by_topic = {
                    topic_for(settings.mqtt_topic_prefix, v).encode(): p for v, p in clients.items()
                }
                log.info("publishing at %.0f readings/s over %d connections", rate, len(clients))
                started_ms = time.time() * 1000.0
                started = time.perf_counter()
                share = rate / publishers
                await asyncio.gather(
                    *(
                        _pace(by_topic, messages, share, started, stop)
                        for messages in plan.per_publisher
                    )
                )
                finished_ms = time.time() * 1000.0
                await asyncio.gather(*(p.drain(timeout_s=30.0) for p in clients.values()))
        finally:
            # The run's vehicles are new ones each run: do not let their accounts pile up.
            await remove_vehicles(settings, vehicle_ids)
        published = sum(p.published for p in clients.values())
        acknowledged = sum(p.acknowledged for p in clients.values())
        log.info("published %d, acknowledged %d; waiting for storage", published, acknowledged)
        await wait_until_stored(
            conn, vehicle_ids, published, settle_s=settle_s, max_wait_s=max_wait_s
        )
        stored = await fetch_stored(conn, vehicle_ids)
    except asyncpg.PostgresError as exc:
        raise TelemetryError(f"load test query failed: {exc}") from exc
    finally:
        await conn.close()
    return compute_report(
        published=published,
        acknowledged=acknowledged,
        publish_started_ms=started_ms,
        publish_finished_ms=finished_ms,
        sent_at_ms=stored.sent_at_ms,
        stored_at_ms=stored.stored_at_ms,
        duplicates=stored.duplicates,
        dead_letters=stored.dead_letters,
    )
