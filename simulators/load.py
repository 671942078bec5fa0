"""Load test: publish pre-generated readings at a target rate, then measure what got stored.

Every message holds one reading of a vehicle named for this run, so no two messages share a
``(vehicle_id, ts)`` key and nothing is deduplicated. Each reading carries ``sent_at_ms`` (epoch
milliseconds when it was handed to the socket) as an extra field; the ingest service keeps it
in ``extra``, and the database stamps ``stored_at`` at insert. Their difference is the
publish→stored latency.

Publish→alert: the run LISTENs on ``alert_events`` and stamps each walk-through episode opened
by one of its vehicles when a reader could first see it (after the commit, as the event stream
shows it), with the episode's vehicles and ``last_seen`` (the end of the opening pass) as it
opened. The reading that triggered it is the one that closed the opening pass: the vehicle's
first reading after ``last_seen``, if it was stored before the alert appeared; otherwise (the
pass closed on silence) the pass's last reading.

A run writes only under vehicle ids of its own (``{prefix}{run}-NNN``, default prefix
``load-``) and, unless told to keep them, removes at the end every row it caused: rows of its
vehicles in every table with a ``vehicle_id`` column, and the alert episodes (with their
events) that only its vehicles drove. An episode another vehicle also drove is left as it is
and counted in the report; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

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
    "AlertWatch",
    "LoadPlan",
    "LoadReport",
    "Opened",
    "StoredReadings",
    "alert_latencies",
    "compute_report",
    "fetch_stored",
    "plan_load",
    "remove_run",
    "run_load",
    "stamp",
    "wait_until_stored",
]

log = logging.getLogger(__name__)

_MAX_SPAN_S = 6 * 24 * 3600  # stay inside the ingest service's accepted age of readings
_SLICE_S = 0.01
_ALERT_TAIL_S = 2.0

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
_SQL_NEW_EVENTS = "SELECT id, alert_id, type, kind FROM alert_events WHERE id > $1 ORDER BY id"
_SQL_LAST_EVENT = "SELECT coalesce(max(id), 0) FROM alert_events"
_SQL_OPENED_STATE = "SELECT id, vehicles, last_seen FROM alerts WHERE id = ANY($1::bigint[])"
# Per opened episode: visible time minus the sent time of the reading that closed the opening
# pass (see the module docstring); with several vehicles at opening, the latest such reading.
_SQL_ALERT_LATENCY = """
WITH opened AS (
    SELECT * FROM unnest($1::bigint[], $2::float8[], $3::text[], $4::timestamptz[])
        AS o(alert_id, visible_ms, vehicle_id, last_seen)
    WHERE vehicle_id = ANY($5::text[])
)
SELECT o.alert_id,
       o.visible_ms - max(CASE WHEN nxt.stored_at <= to_timestamp(o.visible_ms / 1000.0)
                               THEN nxt.sent_ms ELSE lst.sent_ms END) AS latency_ms
FROM opened o
JOIN LATERAL (
    SELECT (r.extra->>'sent_at_ms')::float8 AS sent_ms FROM walkthrough_readings r
    WHERE r.vehicle_id = o.vehicle_id AND r.ts = o.last_seen
) lst ON true
LEFT JOIN LATERAL (
    SELECT r.stored_at, (r.extra->>'sent_at_ms')::float8 AS sent_ms FROM walkthrough_readings r
    WHERE r.vehicle_id = o.vehicle_id AND r.ts > o.last_seen
    ORDER BY r.ts LIMIT 1
) nxt ON true
GROUP BY o.alert_id, o.visible_ms
"""
_SQL_VEHICLE_TABLES = """
SELECT c.table_name FROM information_schema.columns c
JOIN information_schema.tables t USING (table_schema, table_name)
WHERE c.table_schema = current_schema() AND c.column_name = 'vehicle_id'
  AND t.table_type = 'BASE TABLE' AND c.table_name <> 'vehicle_accounts'
ORDER BY c.table_name
"""
_SQL_OWN_ALERTS = "SELECT id FROM alerts WHERE vehicles <@ $1::text[] AND vehicles && $1::text[]"
_SQL_SHARED_ALERTS = """
SELECT count(*) FROM alerts WHERE vehicles && $1::text[] AND NOT vehicles <@ $1::text[]
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
    alerts_opened: int = 0  # episodes opened by the run's vehicles, with a latency
    alert_p50_ms: float = math.nan
    alert_p99_ms: float = math.nan
    alert_max_ms: float = math.nan
    removed: dict[str, int] | None = None  # rows removed per table; None: kept
    shared_alerts: int = 0  # episodes other vehicles also drove, left as they are

    def __str__(self) -> str:
        dead = ", ".join(f"{k}={v}" for k, v in sorted(self.dead_letters.items())) or "none"
        if self.removed is None:
            cleanup = "kept (--keep)"
        else:
            cleanup = ", ".join(f"{k} {v:,d}" for k, v in sorted(self.removed.items()) if v)
            cleanup = f"removed {cleanup or 'nothing'}"
            if self.shared_alerts:
                cleanup += f"; {self.shared_alerts} episodes other vehicles also drove left as is"
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
            ("latency publish→alert", f"p50 {self.alert_p50_ms:,.1f} ms"
                                      f"  p99 {self.alert_p99_ms:,.1f} ms"
                                      f"  max {self.alert_max_ms:,.1f} ms"
                                      f"  ({self.alerts_opened} episodes opened)"),
            ("cleanup", cleanup),
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
    alert_latency_ms: FloatArray | None = None,
) -> LoadReport:
    """The report from what was published and, per stored row, when it was sent and stored;
    ``alert_latency_ms`` holds one publish→alert latency per opened episode.

    Percentiles interpolate linearly between ranks (numpy's default). Rows without a
    ``sent_at_ms`` (NaN) count as stored but not in the latencies.
    """
    alert = np.asarray(alert_latency_ms if alert_latency_ms is not None else [], dtype=np.float64)
    alert = alert[~np.isnan(alert)]
    a50, a99, amax = (
        (*(float(v) for v in np.percentile(alert, [50.0, 99.0])), float(alert.max()))
        if alert.size
        else (math.nan, math.nan, math.nan)
    )
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
        alerts_opened=int(alert.size),
        alert_p50_ms=a50,
        alert_p99_ms=a99,
        alert_max_ms=amax,
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


@dataclass(frozen=True, slots=True)
class Opened:
    """An episode when a reader first saw it: epoch ms, its vehicles and ``last_seen`` (the
    end of the opening pass) then."""

    visible_ms: float
    vehicles: tuple[str, ...]
    last_seen: datetime


class AlertWatch:
    """When each new alert episode became visible: LISTEN on ``alert_events`` (notified at every
    commit that records one) and read the new events at once, stamping them when the read
    returns. Use as ``async with AlertWatch(conn) as watch``; ``watch.opened`` maps the
    walk-through episodes opened meanwhile to :class:`Opened`. ``conn`` is the watch's own."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._wake = asyncio.Event()
        self._last_id = 0
        self._task: asyncio.Task[None] | None = None
        self.opened: dict[int, Opened] = {}

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _read(self) -> None:
        rows = await self._conn.fetch(_SQL_NEW_EVENTS, self._last_id)
        seen_ms = time.time() * 1000.0
        new: list[int] = []
        for row in rows:
            self._last_id = max(self._last_id, int(row["id"]))
            alert_id = int(row["alert_id"])
            if row["type"] == "opened" and row["kind"] == Kind.WALKTHROUGH.value:
                new.append(alert_id)
        # The episode as it opened: later passes add vehicles and move last_seen.
        for row in await self._conn.fetch(_SQL_OPENED_STATE, new) if new else []:
            self.opened.setdefault(
                int(row["id"]), Opened(seen_ms, tuple(row["vehicles"]), row["last_seen"])
            )

    async def _follow(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._read()

    async def __aenter__(self) -> AlertWatch:
        self._last_id = int(await self._conn.fetchval(_SQL_LAST_EVENT))
        await self._conn.add_listener("alert_events", self._notified)
        self._task = asyncio.create_task(self._follow())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._conn.remove_listener("alert_events", self._notified)


async def alert_latencies(
    conn: asyncpg.Connection, opened: Mapping[int, Opened], vehicle_ids: list[str]
) -> dict[int, float]:
    """Publish→alert latency (ms) per episode of ``opened`` that one of ``vehicle_ids`` opened
    (see the module docstring for the triggering reading)."""
    rows = [(a, o.visible_ms, v, o.last_seen) for a, o in opened.items() for v in o.vehicles]
    if not rows:
        return {}
    columns = [list(c) for c in zip(*rows, strict=True)]
    found = await conn.fetch(_SQL_ALERT_LATENCY, *columns, vehicle_ids)
    return {int(r["alert_id"]): float(r["latency_ms"]) for r in found}


async def remove_run(
    conn: asyncpg.Connection, vehicle_ids: list[str]
) -> tuple[dict[str, int], int]:
    """Delete what a run's vehicles caused: their rows in every table with a ``vehicle_id``
    column (accounts aside: :func:`simulators.accounts.remove_vehicles`) and the alert episodes
    only they drove, with those episodes' events. Returns (rows removed per table, episodes
    other vehicles also drove, left as they are)."""
    removed: dict[str, int] = {}
    async with conn.transaction():
        own = [int(r["id"]) for r in await conn.fetch(_SQL_OWN_ALERTS, vehicle_ids)]
        shared = int(await conn.fetchval(_SQL_SHARED_ALERTS, vehicle_ids))
        status = await conn.execute("DELETE FROM alert_events WHERE alert_id = ANY($1)", own)
        removed["alert_events"] = int(status.split()[-1])
        status = await conn.execute("DELETE FROM alerts WHERE id = ANY($1)", own)
        removed["alerts"] = int(status.split()[-1])
        for row in await conn.fetch(_SQL_VEHICLE_TABLES):
            table = row["table_name"]
            status = await conn.execute(
                f'DELETE FROM "{table}" WHERE vehicle_id = ANY($1::text[])', vehicle_ids
            )
            removed[table] = int(status.split()[-1])
    return removed, shared


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
    keep: bool = False,
) -> LoadReport:
    """Publish ``count`` readings at ``rate``/s, each vehicle over its own connection as its own
    (simulated) account, paced by ``publishers`` tasks; wait for the ingest service to store
    them, and report counts, rates and latencies. The run's accounts are removed at the end,
    and so is what it wrote unless ``keep``."""
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
        watch_conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TelemetryError(f"cannot connect to the database: {exc}") from exc
    removed: dict[str, int] | None = None
    shared = 0
    try:
        try:
            async with (
                AlertWatch(watch_conn) as watch,
                fleet_publishers(
                    settings, vehicle_ids, Kind.WALKTHROUGH, session_expiry_s=600
                ) as clients,
            ):
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
                published = sum(p.published for p in clients.values())
                acknowledged = sum(p.acknowledged for p in clients.values())
                log.info("published %d, acknowledged %d; waiting for storage", published,
                         acknowledged)  # fmt: skip
                await wait_until_stored(
                    conn, vehicle_ids, published, settle_s=settle_s, max_wait_s=max_wait_s
                )
                await asyncio.sleep(_ALERT_TAIL_S)  # passes closed by the last readings
                opened = dict(watch.opened)
            stored = await fetch_stored(conn, vehicle_ids)
            alert_ms = await alert_latencies(conn, opened, vehicle_ids)
        finally:
            # The run's vehicles are new ones each run: do not let their accounts pile up.
            await remove_vehicles(settings, vehicle_ids)
            if not keep:
                removed, shared = await remove_run(conn, vehicle_ids)
    except asyncpg.PostgresError as exc:
        raise TelemetryError(f"load test query failed: {exc}") from exc
    finally:
        await conn.close()
        await watch_conn.close()
    report = compute_report(
        published=published,
        acknowledged=acknowledged,
        publish_started_ms=started_ms,
        publish_finished_ms=finished_ms,
        sent_at_ms=stored.sent_at_ms,
        stored_at_ms=stored.stored_at_ms,
        duplicates=stored.duplicates,
        dead_letters=stored.dead_letters,
        alert_latency_ms=np.array(list(alert_ms.values()), dtype=np.float64),
    )
    return replace(report, removed=removed, shared_alerts=shared)
