"""MQTT client benchmark: what each candidate consumer costs per message, without a database.

Creates a scratch database (for the broker's accounts), starts the project's broker (`telemetry
broker run`, authentication on) on a free loopback port, and for each round and each candidate:
starts the candidate in a process of its own (connected and subscribed as the ingest worker is:
MQTT v5, persistent session, Receive Maximum 20,000, QoS 1), floods ``--count`` single-reading
QoS 1 messages from ``--publishers`` `mosquitto_pub` processes, and reports the messages per
second the candidate received (first to last message) and the CPU time (user + system) its
process spent per message, from ``resource.getrusage`` in the process, and the broker's from
/proc. The candidates only receive and acknowledge:

- ``gmqtt``: a bare gmqtt 0.8 subscriber, its normal ``on_message`` path (PUBACK on receipt):
  the reference of issue 12;
- ``gmqtt-hooked``: the ingest worker's consumer before ADR 0012, gmqtt with its QoS 1 handler
  and PUBLISH parser replaced, the PUBACKs of a batch written at once after the batch;
- ``mqtt5``: the ingest worker's consumer now (``telemetry.ingest.mqtt``: the mqtt5 codec on
  an asyncio protocol of our own);
- ``paho``: paho-mqtt 2 with ``manual_ack``, its own network loop in the process's thread,
  every message acknowledged with ``client.ack`` after its batch.

The three that acknowledge after a batch run the project's :class:`Batcher` with a flush that
does nothing (5,000 messages or 200 ms, the worker's defaults). Rounds alternate the candidates
so that the machine's drift spreads over all of them.

    .venv/bin/python -m benchmarks.mqtt_clients --count 100000 --publishers 20 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from telemetry.broker.passwords import hash_password
from telemetry.db import ensure_database
from telemetry.migrate import migrate

CANDIDATES = ("gmqtt", "gmqtt-hooked", "mqtt5", "paho")
PUBLISHER = "bench-publisher"
RECEIVE_MAXIMUM = 20_000
BATCH_ROWS = 5_000
BATCH_AGE_S = 0.2
#: How long a candidate may take to receive everything before the round is given up.
BUDGET_S = 300.0


# --- the parent: broker, publishers, table ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_broker(
    workdir: Path, env: dict[str, str], publisher_password: str
) -> tuple[subprocess.Popen[bytes], int, int]:
    """`telemetry broker run` on a free loopback port, with an account for the publishers:
    (runner, port, Mosquitto's pid)."""
    port = _free_port()
    state = workdir / "broker"
    hashed = hash_password(publisher_password).mosquitto()
    (workdir / "passwords").write_text(f"{PUBLISHER}:{hashed}\n")
    (workdir / "acl").write_text(f"user {PUBLISHER}\ntopic write telemetry/#\n")
    with (workdir / "broker.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry", "broker", "run", "--port", str(port),
             "--state-dir", str(state), "--extra-passwords", str(workdir / "passwords"),
             "--extra-acl", str(workdir / "acl")],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, int((state / "mosquitto.pid").read_text())
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the broker did not start; see {workdir}/broker.log")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _payloads(count: int) -> list[bytes]:
    """Single walk-through readings, one JSON object a line (no newline inside)."""
    now_ms = time.time_ns() // 1_000_000
    return [
        b'{"ts":%d,"lat":39.9%04d,"lon":116.4%04d,"pm25":%d.5,"pm10":61.2,"no2":20.4,'
        b'"speed_kmh":31.0,"sent_at_ms":%d}'
        % (now_ms - count + i, i % 9999, i % 7919, i % 90, now_ms)
        for i in range(count)
    ]


def _publish(port: int, password: str, prefix: str, count: int, publishers: int) -> None:
    """``count`` QoS 1 messages from ``publishers`` mosquitto_pub processes at once, each its
    share on its own vehicle topic, as fast as the broker takes them."""
    payloads = _payloads(count)
    procs = []
    for p in range(publishers):
        share = payloads[p::publishers]
        proc = subprocess.Popen(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-V", "mqttv5",
             "-u", PUBLISHER, "-P", password, "-t", f"{prefix}/walkthrough/bench-{p}", "-l"],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        procs.append((proc, b"\n".join(share) + b"\n"))
    for proc, data in procs:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
    for proc, _ in procs:
        if proc.wait(timeout=BUDGET_S) != 0:
            raise SystemExit("mosquitto_pub failed")


def _run(
    candidate: str,
    broker: tuple[int, int],
    env: dict[str, str],
    count: int,
    publishers: int,
    password: str,
) -> dict[str, Any]:
    """One candidate against one flood: its figures, and the broker's CPU seconds."""
    port, broker_pid = broker
    prefix = f"telemetry/b{uuid.uuid4().hex[:8]}"
    consumer = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.mqtt_clients", "--consume", candidate,
         "--port", str(port), "--count", str(count), "--prefix", prefix],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert consumer.stdout is not None
    try:
        if consumer.stdout.readline().strip() != "ready":
            raise SystemExit(f"{candidate}: the consumer did not start")
        broker_cpu = _cpu_s(broker_pid)
        _publish(port, password, prefix, count, publishers)
        result: dict[str, Any] = json.loads(consumer.stdout.readline())
        result["broker_cpu_s"] = _cpu_s(broker_pid) - broker_cpu
        return result
    finally:
        try:
            consumer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            consumer.kill()


async def _prepare(url: str) -> None:
    await ensure_database(url)
    await migrate(url)


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _table(rows: list[tuple[str, int, dict[str, Any]]], count: int) -> None:
    us = 1e6 / count
    print(f"{'candidate':<14} {'round':>5} {'msg/s':>9} {'µs CPU/msg':>11} {'broker µs/msg':>14}")
    for candidate, round_, r in rows:
        print(
            f"{candidate:<14} {round_:>5} {count / r['seconds']:>9,.0f} "
            f"{r['cpu_s'] * us:>11.2f} {r['broker_cpu_s'] * us:>14.2f}"
        )
    print()
    print(f"{'median':<14} {'':>5} {'msg/s':>9} {'µs CPU/msg':>11}")
    for candidate in dict.fromkeys(c for c, _, _ in rows):
        mine = [r for c, _, r in rows if c == candidate]
        rate = statistics.median(count / r["seconds"] for r in mine)
        cpu = statistics.median(r["cpu_s"] * us for r in mine)
        print(f"{candidate:<14} {'':>5} {rate:>9,.0f} {cpu:>11.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages per run")
    parser.add_argument("--publishers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "TELEMETRY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--consume", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        return _consume(args.consume, args.port, args.prefix, args.count)
    if args.count // args.publishers >= 65_535:
        parser.error("keep --count / --publishers below 65,535 (mosquitto_pub -l packet ids)")

    name = f"telemetry_bench_{uuid.uuid4().hex[:8]}"
    database_url = urlunsplit(urlsplit(args.admin_url)._replace(path=f"/{name}"))
    workdir = Path(tempfile.mkdtemp(prefix="telemetry-mqtt-bench-"))
    password = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": database_url,
        "TELEMETRY_MQTT_USERNAME": "bench-ingest",
        "TELEMETRY_MQTT_PASSWORD": secrets.token_urlsafe(24),
    }
    env.pop("TELEMETRY_MQTT_URL", None)
    broker = None
    try:
        asyncio.run(_prepare(database_url))
        broker, port, broker_pid = _start_broker(workdir, env, password)
        print(
            f"broker: project Mosquitto on port {port}; {args.count:,} messages from "
            f"{args.publishers} mosquitto_pub per run; {args.rounds} rounds\n"
        )
        rows = []
        for round_ in range(1, args.rounds + 1):
            order = args.only if round_ % 2 else args.only[::-1]
            for candidate in order:
                result = _run(
                    candidate, (port, broker_pid), env, args.count, args.publishers, password
                )
                rows.append((candidate, round_, result))
                print(
                    f"  {candidate} round {round_}: {args.count / result['seconds']:,.0f} msg/s, "
                    f"{result['cpu_s'] * 1e6 / args.count:.2f} µs/msg",
                    flush=True,
                )
        print()
        _table(rows, args.count)
        return 0
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=10)
        asyncio.run(_drop(args.admin_url, name))
        shutil.rmtree(workdir, ignore_errors=True)


# --- the child: one candidate consumer ---------------------------------------------------------


class Meter:
    """Counts messages; notes the first and the last, and the process's CPU time when the
    last arrives."""

    def __init__(self, count: int, done: Callable[[], None]) -> None:
        self.count = count
        self.seen = 0
        self.first = self.last = 0.0
        self.cpu_s = 0.0
        self._done = done

    def tick(self, n: int = 1) -> None:
        if self.seen == 0:
            self.first = time.perf_counter()
        self.seen += n
        if self.seen >= self.count:
            self.last = time.perf_counter()
            self.cpu_s = _process_cpu_s()
            self._done()


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _consume(candidate: str, port: int, prefix: str, count: int) -> int:
    from telemetry.settings import Settings

    settings = Settings(
        mqtt_url=f"mqtt://127.0.0.1:{port}",
        mqtt_client_id=f"bench-{candidate}-{uuid.uuid4().hex[:6]}",
        mqtt_topic_prefix=prefix,
        mqtt_receive_maximum=RECEIVE_MAXIMUM,
        ingest_enabled=False,
    )
    if candidate == "paho":
        cpu_before, meter = _consume_paho(settings, count)
    else:
        cpu_before, meter = asyncio.run(_consume_async(candidate, settings, count))
    result = {"seconds": meter.last - meter.first, "cpu_s": meter.cpu_s - cpu_before}
    print(json.dumps(result), flush=True)
    return 0


async def _consume_async(candidate: str, settings: Any, count: int) -> tuple[float, Meter]:
    from telemetry.ingest.batcher import Batcher
    from telemetry.ingest.mqtt import MqttConsumer
    from telemetry.kinds.contract import Message

    finished = asyncio.Event()
    meter = Meter(count, finished.set)

    async def flush(messages: Sequence[Message]) -> None:
        return None

    class CountingIntake:
        def __init__(self, batcher: Batcher) -> None:
            self._batcher = batcher

        def add(self, message: Message, token: Any) -> bool:
            meter.tick()
            return self._batcher.add(message, token)

    consumer: Any
    batcher: Batcher | None = None
    if candidate == "gmqtt":
        consumer = _BareGmqtt(settings, meter)
    else:
        acknowledge: list[Callable[[Sequence[Any]], None]] = []
        batcher = Batcher(
            flush,
            lambda tokens: acknowledge[0](tokens),
            max_rows=BATCH_ROWS,
            max_age_s=BATCH_AGE_S,
        )
        batcher.start()
        factory = _HookedGmqtt if candidate == "gmqtt-hooked" else MqttConsumer
        consumer = factory(settings, CountingIntake(batcher))
        acknowledge.append(consumer.acknowledge)
    await consumer.start()
    for _ in range(600):
        if consumer.connected:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the SUBACK (gmqtt connects before it subscribes)
    cpu_before = _process_cpu_s()
    print("ready", flush=True)
    await asyncio.wait_for(finished.wait(), BUDGET_S)
    if batcher is not None:
        await batcher.close(drain_s=5.0)
    await consumer.stop()
    return cpu_before, meter


class _Gmqtt:
    """A gmqtt 0.8 client connected as the ingest worker's was."""

    def __init__(self, settings: Any, optimistic: bool) -> None:
        import gmqtt

        self._settings = settings
        self._client = gmqtt.Client(
            settings.mqtt_client_id,
            clean_session=False,
            optimistic_acknowledgement=optimistic,
            session_expiry_interval=600,
            receive_maximum=settings.mqtt_receive_maximum,
        )
        endpoint = settings.mqtt
        self._client.set_auth_credentials(endpoint.username, endpoint.password)
        self._client.on_connect = lambda client, flags, rc, properties: client.subscribe(
            settings.mqtt_subscription, qos=1
        )

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected)

    async def start(self) -> None:
        from gmqtt.mqtt.constants import MQTTv50

        endpoint = self._settings.mqtt
        await self._client.connect(endpoint.host, endpoint.port, version=MQTTv50, keepalive=30)

    async def stop(self) -> None:
        await self._client.disconnect()


class _BareGmqtt(_Gmqtt):
    """gmqtt as its documentation has it: on_message, PUBACK on receipt."""

    def __init__(self, settings: Any, meter: Meter) -> None:
        super().__init__(settings, optimistic=True)
        self._client.on_message = lambda client, topic, payload, qos, properties: meter.tick()


class _HookedGmqtt(_Gmqtt):
    """The ingest worker's consumer until ADR 0012 (telemetry/ingest/mqtt.py at the time),
    reduced to its message path: gmqtt's QoS 1 handler and PUBLISH parser replaced on the
    instance, tokens (generation, packet id), the batch's PUBACKs in one write."""

    def __init__(self, settings: Any, intake: Any) -> None:
        from telemetry.kinds.contract import Message

        super().__init__(settings, optimistic=False)
        self._message = Message
        self._intake = intake
        self._generation = 1
        handler = self._client._package_handler
        handler._handle_qos_1_publish_packet = self._on_qos1
        self._parse_publish = handler._handle_publish_packet
        handler._handle_publish_packet = self._on_publish

    def _on_publish(self, cmd: int, packet: bytes) -> None:
        if cmd & 0x06 == 0x02 and len(packet) > 4:
            end = 2 + ((packet[0] << 8) | packet[1])
            if len(packet) > end + 2 and packet[end + 2] == 0 and end > 2:
                try:
                    topic = packet[2:end].decode()
                except UnicodeDecodeError:
                    pass
                else:
                    mid = (packet[end] << 8) | packet[end + 1]
                    self._on_qos1(mid, packet[end + 3 :], topic, None)
                    return
        self._parse_publish(cmd, packet)

    def _on_qos1(self, mid: int, payload: bytes, topic: str, properties: Any) -> None:
        message = self._message(topic, payload, time.time_ns() // 1000)
        self._intake.add(message, (self._generation, mid))

    def acknowledge(self, tokens: Sequence[Any]) -> None:
        if not self._client.is_connected:
            return
        import numpy as np

        mids = [t[1] for t in tokens if t is not None and t[0] == self._generation]
        if mids:
            packets = np.empty((len(mids), 4), dtype=np.uint8)
            packets[:, 0] = 0x40
            packets[:, 1] = 2
            packets[:, 2:] = np.array(mids, dtype=">u2").view(np.uint8).reshape(-1, 2)
            self._client._connection._protocol.write_data(packets.tobytes())


def _consume_paho(settings: Any, count: int) -> tuple[float, Meter]:
    """paho-mqtt 2 with manual_ack: its own loop in this thread; messages acknowledged in
    batches as the worker would (every BATCH_ROWS, or BATCH_AGE_S after the batch began)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    finished = False

    def done() -> None:
        nonlocal finished
        finished = True

    meter = Meter(count, done)
    pending: list[int] = []
    batch_started = 0.0
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=settings.mqtt_client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    endpoint = settings.mqtt
    client.username_pw_set(endpoint.username, endpoint.password)
    subscribed = False

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        c.subscribe(settings.mqtt_subscription, qos=1)

    def on_subscribe(c: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        nonlocal subscribed
        subscribed = True

    def flush() -> None:
        for mid in pending:
            client.ack(mid, 1)
        pending.clear()

    def on_message(c: Any, userdata: Any, message: Any) -> None:
        nonlocal batch_started
        if not pending:
            batch_started = time.monotonic()
        pending.append(message.mid)
        meter.tick()
        if len(pending) >= BATCH_ROWS:
            flush()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 600
    properties.ReceiveMaximum = settings.mqtt_receive_maximum
    client.connect(
        endpoint.host, endpoint.port, keepalive=30, clean_start=False, properties=properties
    )
    while not subscribed:
        client.loop(timeout=0.1)
    cpu_before = _process_cpu_s()
    print("ready", flush=True)
    deadline = time.monotonic() + BUDGET_S
    while not finished and time.monotonic() < deadline:
        client.loop(timeout=0.05)
        if pending and time.monotonic() - batch_started >= BATCH_AGE_S:
            flush()
    flush()
    client.loop(timeout=0.1)
    client.disconnect()
    return cpu_before, meter


if __name__ == "__main__":
    raise SystemExit(main())
