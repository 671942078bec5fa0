"""What Mosquitto's persistence settings cost, with a short and with an outage-sized queue, and
what a broker crash loses with each.

For every setting it starts a private Mosquitto (the project's configuration with only the
autosave lines changed) on a free loopback port with its own persistence directory. A persistent
MQTT v5 session (clean start off, session expiry 1 h, Receive Maximum 20,000: the ingest
worker's settings) subscribes at QoS 1 to the benchmark topic. Then:

1. queue: the session goes away, as the ingest worker does during a database outage, and
   ``mosquitto_pub`` publishes ``--queue`` QoS 1 messages (one reading-sized JSON payload each)
   as fast as the broker acknowledges them, at most ``--window`` unacknowledged. The broker
   queues every one in the offline session. Reported: publish rate overall and over the last
   tenth of the queue, the broker's CPU time, snapshots written.
2. snapshot: with that queue held, the broker is told to save (SIGUSR1); the time until the
   new ``mosquitto.db`` is renamed into place, the broker's CPU time for it, and its size.
3. drain: the session reconnects and acknowledges every message as soon as it arrives; the rate
   at which the queue empties, snapshots written meanwhile, broker CPU.
4. steady: with the session online, acknowledging in batches of at most ``--ack-batch``
   every ``--ack-interval-s`` (as the ingest worker does after each database commit), the
   publisher paces ``--rate`` msg/s for ``--steady-s`` seconds. Reported: the rate the broker
   acknowledged, its CPU time per message, snapshots.
5. crash: publishing and acknowledging go on, and at a random moment within the next
   ``--kill-within-s`` seconds the broker is killed with SIGKILL, restarted from the same
   persistence directory, and the session reconnects and collects what the broker still holds.
   Lost: messages the broker acknowledged to the publisher that the session received neither
   before the crash nor after the restart. Also counted: messages the session had received but
   not yet acknowledged that the restarted broker no longer holds (the ingest worker commits
   those anyway; a consumer that dropped its uncommitted batch on a disconnect would lose them).
6. backlog crash: the session goes away again, the publisher paces ``--rate`` msg/s into its
   queue, and after a random ``--backlog-crash-s`` seconds the broker is killed, restarted, and
   the session counts which of the acknowledged messages survived. This is the case where the
   snapshot interval matters: with the session online, messages leave the broker within
   milliseconds of arriving.

    .venv/bin/python -m benchmarks.broker_persistence --queue 200000

Each phase is bounded in time (``--budget-s``); a setting that cannot keep up is cut off and its
row shows the count and rate it had reached. mosquitto_pub is fed its input at most
``MAX_OUTSTANDING`` lines ahead of its acknowledgements: given all of it at once it reads to the
end, and since it stops at the first PUBACK carrying the last message's packet id (16 bits, so
repeated every 65,535 messages) it then quit with 65,535 messages unsent.

After a restart the session counts until the sentinel (published after the restart, so queued
behind everything that survived) has arrived and nothing else has for 2 s: a message left in
flight earlier, an older sentinel included, is redelivered ahead of the queue. ``every 100
changes`` runs only when named with ``--only``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "bench/persistence"
SESSION_ID = "bench-offline-session"
SENTINEL = b"end"
RECEIVE_MAXIMUM = 20_000
# Lines written to mosquitto_pub but not yet acknowledged, at most. Below 65,535 so that packet
# ids outstanding at the end of its input are unique (see the module docstring).
MAX_OUTSTANDING = 20_000
CHUNK = 500
PAYLOAD = ',"vehicle_id":"walk-042","lat":39.9905,"lon":116.3179,"pm25":41,"pm10":78}\n'
PUBACK = [bytes((0x40, 2, mid >> 8, mid & 0xFF)) for mid in range(65_536)]
PUBACK_RE = re.compile(rb"received PUBACK \(Mid: \d+, RC:(\d+)\)")

# (label, autosave lines replacing the shipped ones)
SETTINGS: list[tuple[str, str]] = [
    ("every 30 s", "autosave_interval 30\n"),
    ("every 5 s", "autosave_interval 5\n"),
    ("every 1 s", "autosave_interval 1\n"),
    ("every 10000 changes", "autosave_on_changes true\nautosave_interval 10000\n"),
    ("every 1000 changes", "autosave_on_changes true\nautosave_interval 1000\n"),
    ("every 100 changes", "autosave_on_changes true\nautosave_interval 100\n"),
]
DEFAULT_SETTINGS = [label for label, _ in SETTINGS if label != "every 100 changes"]


@dataclass
class Row:
    setting: str
    # 1. queue
    queued: int = 0
    queue_s: float = 0.0
    tail_rate: float = 0.0
    queue_cpu_s: float = 0.0
    queue_saves: int = 0
    # 2. snapshot
    snapshot_s: float = 0.0
    snapshot_cpu_s: float = 0.0
    snapshot_mb: float = 0.0
    # 3. drain
    drained: int = 0
    drain_s: float = 0.0
    drain_cpu_s: float = 0.0
    drain_saves: int = 0
    # 4. steady
    steady_acked: int = 0
    steady_s: float = 0.0
    steady_cpu_s: float = 0.0
    steady_saves: int = 0
    steady_max_gap_ms: float = 0.0
    # 5. crash
    kill_at_s: float = 0.0
    crash_acked: int = 0
    session_kept: bool = False
    lost: int = 0
    unacked_forgotten: int = 0
    # 6. crash with the session away
    backlog_s: float = 0.0
    backlog_acked: int = 0
    backlog_saves: int = 0
    backlog_kept: bool = False
    backlog_lost: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def queue_rate(self) -> float:
        return self.queued / self.queue_s if self.queue_s else 0.0

    @property
    def drain_rate(self) -> float:
        return self.drained / self.drain_s if self.drain_s else 0.0

    @property
    def steady_rate(self) -> float:
        return self.steady_acked / self.steady_s if self.steady_s else 0.0

    @property
    def steady_us_per_msg(self) -> float:
        return 1e6 * self.steady_cpu_s / self.steady_acked if self.steady_acked else 0.0


# --- broker ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(workdir: Path, port: int, autosave: str) -> Path:
    """The shipped configuration with its autosave lines replaced by ``autosave``."""
    lines = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    kept = [line for line in lines if not line.startswith(("autosave_", "listener "))]
    conf = "\n".join(kept) + f"\n{autosave}listener {port} 127.0.0.1\n"
    conf += f"persistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n"
    if os.geteuid() == 0:
        # Started as root, Mosquitto would switch to an account that cannot write workdir.
        conf += "user root\n"
    path = workdir / "mosquitto.conf"
    path.write_text(conf)
    return path


def _start(conf: Path, port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    # Its log goes to the file; standard error only repeats the warning about running as root.
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120  # a large snapshot takes a while to load
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"mosquitto did not start; see {conf.parent}/mosquitto.log")


def _cpu_s(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _saves(workdir: Path) -> int:
    log = workdir / "mosquitto.log"
    return log.read_text(errors="replace").count("Saving in-memory database") if log.exists() else 0


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except FileNotFoundError:
        return 0.0


async def _snapshot(
    broker: subprocess.Popen[bytes], db: Path, budget_s: float
) -> tuple[float, float]:
    """Ask the broker to save; (seconds until the new file is in place, broker CPU seconds)."""
    before = _inode(db)
    cpu = _cpu_s(broker.pid)
    started = time.monotonic()
    broker.send_signal(signal.SIGUSR1)
    while time.monotonic() - started < budget_s:
        if _inode(db) not in (None, before):
            return time.monotonic() - started, _cpu_s(broker.pid) - cpu
        await asyncio.sleep(0.002)
    return float("nan"), _cpu_s(broker.pid) - cpu


# --- the session (an ingest worker) ---------------------------------------------------------


class Session:
    """The persistent session, acknowledging like the ingest worker: it takes QoS 1 packets
    before gmqtt's per-message tasks and writes PUBACKs itself, at once (``batch=None``) or
    at most ``batch`` every ``interval_s``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: set[int] = set()
        self.acked: set[int] = set()
        self.pending: list[tuple[int, int]] = []  # (mid, seq) received, not acknowledged
        self.sentinel = asyncio.Event()
        self.after_sentinel = 0  # messages that arrived after the sentinel
        self.last_rx = 0.0
        self.session_present = False
        self.batch: int | None = None
        self.interval_s = 0.2
        self.progress: Callable[[], None] | None = None
        self._flush_scheduled = False
        self._ticker: asyncio.Task[None] | None = None
        client = gmqtt.Client(
            SESSION_ID,
            clean_session=False,
            optimistic_acknowledgement=False,
            session_expiry_interval=3600,
            receive_maximum=RECEIVE_MAXIMUM,
        )
        # No reconnecting on its own: after the crash a new Session takes over the id.
        client.set_config({"reconnect_retries": 0, "reconnect_delay": 3600})
        client.on_connect = self._on_connect
        handler = client._package_handler
        self._parse_publish = handler._handle_publish_packet
        handler._handle_publish_packet = self._on_publish
        self.client = client

    def _on_connect(self, client: Any, flags: int, rc: int, props: Any) -> None:
        self.session_present = bool(flags)

    def _on_publish(self, cmd: int, packet: bytes) -> None:
        if cmd & 0x06 != 0x02:
            self._parse_publish(cmd, packet)
            return
        end = 2 + ((packet[0] << 8) | packet[1])
        mid = (packet[end] << 8) | packet[end + 1]
        props = packet[end + 2]  # property length; < 128 here, so one byte
        payload = packet[end + 3 + props :]
        self.last_rx = time.monotonic()
        if payload == SENTINEL:
            self.sentinel.set()
            seq = -1
        else:
            seq = int(payload[7 : payload.index(b",", 7)])
            self.seen.add(seq)
            if self.sentinel.is_set():
                self.after_sentinel += 1
        self.pending.append((mid, seq))
        if self.batch is None and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        if self.progress is not None:
            self.progress()

    def _flush(self, limit: int | None = None) -> None:
        self._flush_scheduled = False
        if not self.pending or not self.client.is_connected:
            return
        n = len(self.pending) if limit is None else min(limit, len(self.pending))
        done, self.pending = self.pending[:n], self.pending[n:]
        self.client._connection._protocol.write_data(b"".join(PUBACK[m] for m, _ in done))
        self.acked.update(seq for _, seq in done)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._flush(self.batch)

    def ack_in_batches(self, batch: int, interval_s: float) -> None:
        self.batch, self.interval_s = batch, interval_s
        self._ticker = asyncio.create_task(self._tick())

    async def connect(self) -> None:
        await self.client.connect("127.0.0.1", self.port, version=MQTTv50, keepalive=60)

    async def subscribe(self) -> None:
        done = asyncio.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(TOPIC, qos=1)
        await asyncio.wait_for(done.wait(), timeout=10)

    async def collect(self, budget_s: float, quiet_s: float = 2.0) -> bool:
        """Until the sentinel has arrived and nothing else for ``quiet_s``; False if cut off."""
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            if self.sentinel.is_set() and time.monotonic() - self.last_rx >= quiet_s:
                return True
            await asyncio.sleep(0.05)
        return False

    async def close(self, *, graceful: bool = True) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if graceful:
            self._flush()  # leave nothing in flight
            await asyncio.sleep(0.5)
            await self.client.disconnect()
        else:
            self.client._is_active = False  # the broker is gone; do not come back


# --- the publisher ----------------------------------------------------------------------------


class Publisher:
    """``mosquitto_pub -l`` fed at most MAX_OUTSTANDING lines ahead of its PUBACKs, optionally
    paced; counts the PUBACKs it prints (-d) as they arrive."""

    def __init__(self, port: int, client_id: str, window: int) -> None:
        exe = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
        self.args = [exe, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1"]
        self.args += ["-t", TOPIC, "-i", client_id, "-l", "-M", str(window), "-d"]
        self.written = 0
        self.acked = 0
        self.refused = 0
        self.ack_times: list[tuple[float, int]] = []  # (monotonic, acked) every CHUNK acks
        self.max_gap_s = 0.0
        self._last_ack = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._acked_event = asyncio.Event()

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            m = PUBACK_RE.search(line)
            if not m:
                continue
            if int(m.group(1)) >= 0x80:
                self.refused += 1
                continue
            now = time.monotonic()
            if self._last_ack:
                self.max_gap_s = max(self.max_gap_s, now - self._last_ack)
            self._last_ack = now
            self.acked += 1
            if self.acked % CHUNK == 0:
                self.ack_times.append((now, self.acked))
            self._acked_event.set()

    async def run(
        self, first: int, count: int, *, rate: float | None, budget_s: float
    ) -> tuple[int, float]:
        """Publish seq ``first`` … ``first+count-1``; (acknowledged, seconds). Cancel to stop."""
        self._proc = await asyncio.create_subprocess_exec(
            "stdbuf", "-oL", *self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._proc.stdin is not None
        reader = asyncio.create_task(self._read())
        started = time.monotonic()
        self._last_ack = 0.0
        deadline = started + budget_s
        try:
            while self.written < count and time.monotonic() < deadline:
                while self.written - self.acked >= MAX_OUTSTANDING:
                    self._acked_event.clear()
                    try:
                        await asyncio.wait_for(self._acked_event.wait(), 1.0)
                    except TimeoutError:
                        if time.monotonic() >= deadline:
                            break
                if time.monotonic() >= deadline:
                    break
                if rate:
                    delay = started + self.written / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                n = min(CHUNK, count - self.written)
                seqs = range(first + self.written, first + self.written + n)
                self._proc.stdin.write("".join(f'{{"seq":{i}{PAYLOAD}' for i in seqs).encode())
                await self._proc.stdin.drain()
                self.written += n
            if self.written == count:
                self._proc.stdin.close()
                while self.acked < count and time.monotonic() < deadline:
                    self._acked_event.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._acked_event.wait(), 1.0)
        finally:
            elapsed = (self._last_ack or time.monotonic()) - started
            await self.stop(reader)
        return self.acked, elapsed

    async def stop(self, reader: asyncio.Task[None] | None = None) -> None:
        if self._proc is not None:
            try:  # PUBACKs already on its socket get printed meanwhile
                await asyncio.wait_for(self._proc.wait(), 0.5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await self._proc.wait()
        if reader is not None:
            await asyncio.wait_for(reader, 10)

    def rate_over_last(self, n: int) -> float:
        """Acknowledgement rate over the last ``n`` acknowledged messages."""
        if len(self.ack_times) < 2:
            return 0.0
        t_end, a_end = self.ack_times[-1]
        for t, a in reversed(self.ack_times):
            if a_end - a >= n:
                return (a_end - a) / (t_end - t) if t_end > t else 0.0
        t, a = self.ack_times[0]
        return (a_end - a) / (t_end - t) if t_end > t else 0.0


async def _publish_one(port: int, payload: bytes) -> None:
    exe = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    pub = await asyncio.create_subprocess_exec(
        exe, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1", "-t", TOPIC,
        "-i", "bench-sentinel", "-m", payload.decode(),
    )  # fmt: skip
    if await pub.wait():
        raise SystemExit("mosquitto_pub could not publish the sentinel")


async def _wait_for(cond: Callable[[], bool], budget_s: float) -> bool:
    deadline = time.monotonic() + budget_s
    while not cond():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# --- one setting ------------------------------------------------------------------------------


async def _measure(label: str, autosave: str, args: argparse.Namespace, seed: int) -> Row:
    row = Row(label)
    workdir = Path(tempfile.mkdtemp(prefix="broker-persistence-"))
    port = _free_port()
    conf = _config(workdir, port, autosave)
    db = workdir / "mosquitto.db"
    broker = _start(conf, port)
    try:
        session = Session(port)
        await session.connect()
        await session.subscribe()
        await session.close()

        # 1. queue for the offline session
        saves, cpu = _saves(workdir), _cpu_s(broker.pid)
        pub = Publisher(port, "bench-queue", args.window)
        row.queued, row.queue_s = await pub.run(0, args.queue, rate=None, budget_s=args.budget_s)
        row.queue_cpu_s = _cpu_s(broker.pid) - cpu
        row.queue_saves = _saves(workdir) - saves
        row.tail_rate = pub.rate_over_last(max(CHUNK, row.queued // 10))
        if row.queued < args.queue:
            row.notes.append(f"queue cut off at {row.queued} after {row.queue_s:.0f} s")

        # 2. a snapshot of that queue
        await asyncio.sleep(1.5)  # let a save the queue triggered finish first
        row.snapshot_s, row.snapshot_cpu_s = await _snapshot(broker, db, args.budget_s)
        row.snapshot_mb = _size_mb(db)

        # 3. drain
        target = row.queued
        session = Session(port)
        saves, cpu = _saves(workdir), _cpu_s(broker.pid)
        started = time.monotonic()
        await session.connect()
        drained = await _wait_for(lambda: len(session.acked) >= target, args.budget_s)
        row.drain_s = time.monotonic() - started
        row.drained = len(session.acked)
        row.drain_cpu_s = _cpu_s(broker.pid) - cpu
        row.drain_saves = _saves(workdir) - saves
        if not drained:
            row.notes.append(f"drain cut off at {row.drained} after {row.drain_s:.0f} s")

        # 4. steady state, then 5. the crash at a random moment
        session.ack_in_batches(args.ack_batch, args.ack_interval_s)
        kill_at = args.steady_s + random.Random(seed).uniform(0, args.kill_within_s)
        first = 10_000_000
        total = int(args.rate * (args.steady_s + args.kill_within_s + 5))
        steady = Publisher(port, "bench-steady", args.window)
        task = asyncio.create_task(steady.run(first, total, rate=args.rate, budget_s=600))
        await asyncio.sleep(1.0)  # warm up
        saves, cpu, acked, t0 = _saves(workdir), _cpu_s(broker.pid), steady.acked, time.monotonic()
        steady.max_gap_s = 0.0
        await asyncio.sleep(args.steady_s - 1.0)
        row.steady_s = time.monotonic() - t0
        row.steady_cpu_s = _cpu_s(broker.pid) - cpu
        row.steady_acked = steady.acked - acked
        row.steady_saves = _saves(workdir) - saves
        row.steady_max_gap_ms = 1e3 * steady.max_gap_s
        await asyncio.sleep(max(0.0, kill_at - args.steady_s))
        row.kill_at_s = kill_at
        broker.send_signal(signal.SIGKILL)  # the crash: no shutdown save
        broker.wait()
        await session.close(graceful=False)
        task.cancel()
        # Cancelled, or mosquitto_pub is already gone with the broker.
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task
        row.crash_acked = steady.acked
        before_crash = {s for s in session.seen if s >= first}
        acked_before = {s for s in session.acked if s >= first}

        broker = _start(conf, port)
        await _publish_one(port, SENTINEL)  # queued behind whatever survived
        after = Session(port)
        await after.connect()
        if after.session_present and not await after.collect(args.budget_s):
            row.notes.append("recovery cut off")
        if after.after_sentinel:
            row.notes.append(f"crash: {after.after_sentinel} arrived after the sentinel")
        row.session_kept = after.session_present
        received = before_crash | {s for s in after.seen if s >= first}
        row.lost = len(set(range(first, first + row.crash_acked)) - received)
        # Delivered before the crash, not yet acknowledged by the session, and not redelivered:
        # lost too if the consumer drops what it had not committed when its connection breaks.
        row.unacked_forgotten = len(before_crash - acked_before - after.seen)
        if not after.session_present:
            await after.subscribe()  # a new session, for phase 6
        await after.close()

        # 6. a crash while the session is away and the queue grows
        backlog_for = random.Random(seed + 1000).uniform(*args.backlog_crash_s)
        second = 20_000_000
        saves = _saves(workdir)
        backlog = Publisher(port, "bench-backlog", args.window)
        total = int(args.rate * (backlog_for + 5))
        task = asyncio.create_task(backlog.run(second, total, rate=args.rate, budget_s=600))
        await asyncio.sleep(backlog_for)
        broker.send_signal(signal.SIGKILL)
        broker.wait()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            task.cancel()
            await task
        row.backlog_s, row.backlog_acked = backlog_for, backlog.acked
        row.backlog_saves = _saves(workdir) - saves
        broker = _start(conf, port)
        await _publish_one(port, SENTINEL)
        last = Session(port)
        await last.connect()
        if last.session_present and not await last.collect(args.budget_s):
            row.notes.append("backlog recovery cut off")
        if last.after_sentinel:
            row.notes.append(f"backlog: {last.after_sentinel} arrived after the sentinel")
        row.backlog_kept = last.session_present
        row.backlog_lost = len(set(range(second, second + backlog.acked)) - last.seen)
        await last.close()
        return row
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _print_tables(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\n1-3: {args.queue} QoS 1 messages queued for an offline session, window {args.window}")
    head = (
        f"{'setting':<20} {'queued':>7} {'msg/s':>7} {'last10%':>7} {'CPU s':>6} {'saves':>5} "
        f"{'snap s':>6} {'snap MB':>7} {'drain/s':>7} {'drain s':>7} {'CPU s':>6} {'saves':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.setting:<20} {r.queued:>7} {r.queue_rate:>7.0f} {r.tail_rate:>7.0f} "
            f"{r.queue_cpu_s:>6.2f} {r.queue_saves:>5} {r.snapshot_s:>6.2f} "
            f"{r.snapshot_mb:>7.1f} {r.drain_rate:>7.0f} {r.drain_s:>7.1f} "
            f"{r.drain_cpu_s:>6.2f} {r.drain_saves:>5}"
        )
    print(
        f"\n4-5: session online acking <= {args.ack_batch} every {args.ack_interval_s} s, "
        f"publisher paced at {args.rate:.0f} msg/s for {args.steady_s:.0f} s, then SIGKILL"
    )
    head = (
        f"{'setting':<20} {'msg/s':>7} {'µs/msg':>7} {'saves':>5} {'max gap ms':>10} "
        f"{'kill at s':>9} {'acked':>7} {'session':>7} {'lost':>7} {'unacked lost':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.setting:<20} {r.steady_rate:>7.0f} {r.steady_us_per_msg:>7.1f} "
            f"{r.steady_saves:>5} {r.steady_max_gap_ms:>10.0f} {r.kill_at_s:>9.1f} "
            f"{r.crash_acked:>7} {'kept' if r.session_kept else 'LOST':>7} {r.lost:>7} "
            f"{r.unacked_forgotten:>12}"
        )
    lo, hi = args.backlog_crash_s
    print(
        f"\n6: session away, publisher paced at {args.rate:.0f} msg/s, SIGKILL after a random "
        f"{lo:.0f}-{hi:.0f} s"
    )
    head = (
        f"{'setting':<20} {'kill at s':>9} {'acked':>7} {'saves':>5} {'session':>7} "
        f"{'lost':>7} {'lost s':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.setting:<20} {r.backlog_s:>9.1f} {r.backlog_acked:>7} {r.backlog_saves:>5} "
            f"{'kept' if r.backlog_kept else 'LOST':>7} {r.backlog_lost:>7} "
            f"{r.backlog_lost / args.rate:>6.2f}"
        )
    for r in rows:
        for note in r.notes:
            print(f"{r.setting}: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--queue", type=int, default=200_000, help="messages queued offline")
    parser.add_argument("--window", type=int, default=100, help="unacknowledged at most")
    parser.add_argument("--rate", type=float, default=20_000.0, help="steady msg/s")
    parser.add_argument("--steady-s", type=float, default=20.0, help="steady phase measured")
    parser.add_argument("--kill-within-s", type=float, default=10.0, help="then kill within")
    parser.add_argument(
        "--backlog-crash-s",
        type=float,
        nargs=2,
        default=(5.0, 15.0),
        metavar=("MIN", "MAX"),
        help="phase 6: kill after a random time in this range",
    )
    parser.add_argument("--ack-batch", type=int, default=5_000)
    parser.add_argument("--ack-interval-s", type=float, default=0.2)
    parser.add_argument("--budget-s", type=float, default=90.0, help="time limit per phase")
    parser.add_argument("--seed", type=int, default=1, help="for the moment of the crash")
    parser.add_argument(
        "--only", action="append", help="run only this setting (its label; repeatable)"
    )
    args = parser.parse_args()
    # The crash breaks the session's connection on purpose; gmqtt would log a traceback.
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    if args.queue < CHUNK:
        parser.error(f"--queue must be at least {CHUNK}")
    if args.steady_s < 2:
        parser.error("--steady-s must be at least 2")
    known = [label for label, _ in SETTINGS]
    for label in args.only or []:
        if label not in known:
            parser.error(f"unknown setting {label!r}; one of {known}")

    rows: list[Row] = []
    for i, (label, autosave) in enumerate(SETTINGS):
        if label not in (args.only or DEFAULT_SETTINGS):
            continue
        row = asyncio.run(_measure(label, autosave, args, args.seed + i))
        rows.append(row)
        print(f"done: {label}: {row}", flush=True)
    _print_tables(rows, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
