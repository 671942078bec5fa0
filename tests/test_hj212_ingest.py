"""HJ 212 end to end: packets over a real TCP connection to the ingest worker's listener and
as MQTT payloads through the real broker, stored once under their vehicle, broken ones
dead-lettered with their reason, replies checked (docs/adr/0010-hj212.md)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from conftest import Broker, free_port
from support import MOSQUITTO_PUB, eventually, publish

from telemetry.broker import vehicles
from telemetry.hj212.crc import crc_hex, modbus_crc
from telemetry.hj212.framing import Frame, Framer
from telemetry.hj212.packet import Deviation, build_packet
from telemetry.hj212.station import Station
from telemetry.ingest.worker import IngestWorker
from telemetry.settings import Settings
from telemetry.store.audit import Actor

OPERATOR = Actor(account_id=None, name="cli:tester")
CST = timezone(timedelta(hours=8))


def data_time(seconds_ago: int = 5) -> str:
    return (datetime.now(CST) - timedelta(seconds=seconds_ago)).strftime("%Y%m%d%H%M%S")


def segment(mn: str, *, cn: str = "2011", flag: int = 5, pw: str = "123456", cp: str = "") -> str:
    qn = datetime.now(CST).strftime("%Y%m%d%H%M%S%f")[:17]
    return f"QN={qn};ST=22;CN={cn};PW={pw};MN={mn};Flag={flag};CP=&&{cp}&&"


def realtime(when: str, pm25: float = 38.2) -> str:
    return (
        f"DataTime={when};a34004-Rtd={pm25},a34004-Flag=N;a21026-Rtd=0.008,a21026-Flag=N;"
        "a21005-Rtd=0.62,a21005-Flag=N;a24088-Rtd=1.5,a24088-Flag=N;Lng=116.31;Lat=39.99"
    )


async def register(pool: asyncpg.Pool, station: Station) -> None:
    async with pool.acquire() as conn:
        await vehicles.register(
            conn, station.vehicle_id, station.kind, actor=OPERATOR, hj212=station
        )


@pytest.fixture
async def tcp(
    database_url: str, pool: asyncpg.Pool, broker: Broker
) -> AsyncIterator[tuple[IngestWorker, int]]:
    port = free_port()
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"hj212-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        hj212_tcp_port=port,
        hj212_tcp_idle_s=30,
    )
    worker = IngestWorker(settings, pool)
    await worker.start()
    try:
        yield worker, port
    finally:
        await worker.stop()


class Analyser:
    """A TCP client that speaks like a data logger: writes bytes, reads reply packets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.framer = reader, writer, Framer()
        self.replies: list[str] = []

    async def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.writer.write(chunk)
            await self.writer.drain()
            await asyncio.sleep(0.01)

    async def replies_within(self, n: int, within_s: float = 10.0) -> list[str]:
        async def read() -> None:
            while len(self.replies) < n:
                data = await self.reader.read(4096)
                assert data, "connection closed"
                for piece in self.framer.feed(data):
                    assert isinstance(piece, Frame), piece
                    assert crc_hex(piece.segment) == piece.crc.decode()
                    self.replies.append(piece.segment.decode())

        await asyncio.wait_for(read(), within_s)
        return self.replies[:n]

    async def no_more_replies(self, wait_s: float = 0.5) -> None:
        try:
            data = await asyncio.wait_for(self.reader.read(4096), wait_s)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected reply {data!r}")


async def connect(port: int) -> Analyser:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return Analyser(reader, writer)


async def readings(pool: asyncpg.Pool, vehicle_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM walkthrough_readings WHERE vehicle_id = $1 ORDER BY ts", vehicle_id
    )


async def reasons(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT reason FROM dead_letters ORDER BY id")
    return [r["reason"] for r in rows]


async def test_tcp_packets_are_stored_once_with_units_and_replied_after_commit(
    pool: asyncpg.Pool, tcp: tuple[IngestWorker, int]
) -> None:
    await register(pool, Station("hj-veh-1", "walkthrough", "MN0001", "123456"))
    first = build_packet(segment("MN0001", cp=realtime(data_time(10))))
    second = build_packet(segment("MN0001", cp=realtime(data_time(9), pm25=40.0)))
    analyser = await connect(tcp[1])
    # Split across reads, two in one read, garbage and blank lines between them.
    await analyser.send(first[:7], first[7:50], first[50:] + b"\r\nnoise" + second)
    replies = await analyser.replies_within(2)
    assert all(";ST=91;CN=9014;PW=123456;MN=MN0001;Flag=4;CP=&&&&" in r for r in replies)
    rows = await readings(pool, "hj-veh-1")
    assert [r["pm25"] for r in rows] == pytest.approx([38.2, 40.0])
    assert rows[0]["so2"] == pytest.approx(8.0)  # 0.008 mg/m3 as µg/m3
    assert rows[0]["co"] == pytest.approx(0.62)  # mg/m3, the channel's unit
    assert (rows[0]["lat"], rows[0]["lon"]) == pytest.approx((39.99, 116.31))
    assert rows[0]["flag"] == "N"
    assert rows[0]["extra"] == {"a24088-Rtd": 1.5, "a24088-Flag": "N"}
    # Sent again (a data logger that did not see the reply): stored once, answered again.
    await analyser.send(first)
    await analyser.replies_within(3)
    assert len(await readings(pool, "hj-veh-1")) == 2
    assert await reasons(pool) == ["hj212_garbage"]
    analyser.writer.close()


async def test_broken_packets_are_dead_lettered_with_their_reason_and_not_answered(
    pool: asyncpg.Pool, tcp: tuple[IngestWorker, int]
) -> None:
    await register(pool, Station("hj-veh-2", "walkthrough", "MN0002", "123456"))
    good = segment("MN0002", cp=realtime(data_time()))
    bad_crc = build_packet(good)[:-6] + b"0000\r\n"
    wrong_length = b"##0999" + build_packet(good)[6:]
    bad_field = build_packet(good.replace("CN=2011", "CN=20x1"))
    unknown_mn = build_packet(segment("MN9999", cp=realtime(data_time())))
    wrong_pw = build_packet(segment("MN0002", pw="654321", cp=realtime(data_time())))
    no_position = build_packet(segment("MN0002", cp=f"DataTime={data_time()};a34004-Rtd=1"))
    analyser = await connect(tcp[1])
    await analyser.send(bad_crc, wrong_length, bad_field, unknown_mn, wrong_pw, no_position)
    expected = [
        "hj212_crc", "hj212_length", "hj212_field", "hj212_unknown_mn", "hj212_password",
        "hj212_no_position",
    ]  # fmt: skip

    async def all_dead() -> bool:
        return await reasons(pool) == expected

    await eventually(all_dead)
    await analyser.no_more_replies()
    # The connection still works.
    await analyser.send(build_packet(good))
    assert "CN=9014" in (await analyser.replies_within(1))[0]
    assert len(await readings(pool, "hj-veh-2")) == 1
    analyser.writer.close()


async def test_time_calibration_heartbeat_interval_and_split_packets(
    pool: asyncpg.Pool, tcp: tuple[IngestWorker, int]
) -> None:
    await register(pool, Station("hj-site-3", "walkthrough", "MN0003", lat=39.9, lon=116.4))
    analyser = await connect(tcp[1])
    await analyser.send(build_packet(segment("MN0003", cn="1013", cp="")))
    notify, set_time = await analyser.replies_within(2)
    assert "CN=9013" in notify
    assert "CN=1012" in set_time and "SystemTime=" in set_time
    sent = datetime.strptime(set_time.split("SystemTime=")[1][:14], "%Y%m%d%H%M%S")
    assert abs(sent.replace(tzinfo=CST) - datetime.now(UTC)) < timedelta(seconds=30)
    # A command the service has nothing to store for: no error, no dead letter.
    await analyser.send(build_packet(segment("MN0003", cn="2021", flag=4, cp="")))
    # Hour data kept as such, not as readings.
    begin = data_time(3600)
    hour = f"DataTime={begin};a21005-Min=0.5,a21005-Avg=0.6,a21005-Max=0.9,a21005-Flag=N"
    await analyser.send(build_packet(segment("MN0003", cn="2061", cp=hour)))
    assert "CN=9014" in (await analyser.replies_within(3))[2]
    # A split packet: stored when its last part arrives; the parked site's position.
    head = segment("MN0003", flag=7).split(";CP=")[0]
    part2 = build_packet(f"{head};PNUM=2;PNO=2;CP=&&a34002-Rtd=61.0&&")
    part1 = build_packet(f"{head};PNUM=2;PNO=1;CP=&&DataTime={data_time()};a34004-Rtd=12&&")
    await analyser.send(part2, part1)
    await analyser.replies_within(5)
    rows = await readings(pool, "hj-site-3")
    assert [(r["pm25"], r["pm10"], r["lat"], r["lon"]) for r in rows] == [
        pytest.approx((12.0, 61.0, 39.9, 116.4))
    ]
    intervals = await pool.fetch("SELECT * FROM hj212_interval_data")
    assert [(r["cn"], r["factor"], r["avg_value"], r["unit"]) for r in intervals] == [
        ("2061", "a21005", 0.6, "mg/m3")
    ]
    assert await reasons(pool) == []
    analyser.writer.close()


async def test_tolerances_are_per_analyser_and_counted(
    pool: asyncpg.Pool, tcp: tuple[IngestWorker, int]
) -> None:
    await register(
        pool,
        Station("hj-old-4", "walkthrough", "MN0004", tolerate=frozenset({Deviation.CRC_MODBUS})),
    )
    await register(pool, Station("hj-strict-5", "walkthrough", "MN0005"))
    analyser = await connect(tcp[1])
    for mn in ("MN0004", "MN0005"):
        data = segment(mn, flag=4, cp=realtime(data_time())).encode()
        await analyser.send(b"##%04d%s%04X\r\n" % (len(data), data, modbus_crc(data)))

    async def settled() -> bool:
        return await reasons(pool) == ["hj212_crc"]

    await eventually(settled)
    assert len(await readings(pool, "hj-old-4")) == 1
    counted = await pool.fetch("SELECT mn, deviation, packets FROM hj212_deviations")
    assert [tuple(r) for r in counted] == [("MN0004", "crc_modbus", 1)]
    analyser.writer.close()


async def test_mqtt_payloads_through_the_broker_as_a_registered_vehicle(
    broker: Broker,
) -> None:
    """Registered with the command (MQTT credentials and analyser in one registration);
    published with mosquitto_pub as the vehicle; the worker shares the broker's database."""
    vehicle_id, mn = f"hj-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12].upper()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATABASE_URL"] = broker.database_url
    command = [sys.executable, "-m", "telemetry", "vehicles", "register", vehicle_id,
               "--kind", "walkthrough", "--hj212-mn", mn, "--hj212-pw", "123456",
               "--position", "39.9,116.4"]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    out = done.stdout
    password = out.strip().splitlines()[-1]
    pool = await asyncpg.create_pool(broker.database_url, min_size=1, max_size=4)
    settings = Settings(
        database_url=broker.database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"hj212-mqtt-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
    )
    worker = IngestWorker(settings, pool)
    await worker.start()
    try:
        await eventually(lambda: asyncio.sleep(0, worker.mqtt_connected))
        topic = f"telemetry/walkthrough/{vehicle_id}"
        good = build_packet(segment(mn, cp=f"DataTime={data_time()};a34004-Rtd=21.5"))
        bad = good[:-6] + b"0000\r\n"

        def pub(payload: bytes) -> subprocess.CompletedProcess[bytes]:
            args = ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic]
            args += ["-u", vehicle_id, "-P", password, "-s"]
            return subprocess.run([MOSQUITTO_PUB, *args], input=payload, timeout=10)

        async def stored() -> bool:
            await asyncio.to_thread(pub, good)
            await asyncio.sleep(0.3)
            n = await pool.fetchval(
                "SELECT count(*) FROM walkthrough_readings WHERE vehicle_id = $1", vehicle_id
            )
            return bool(n)

        await eventually(stored)  # the broker loads the new account within a moment
        await asyncio.to_thread(pub, bad)

        async def dead() -> list[str]:
            rows = await pool.fetch(
                "SELECT reason FROM dead_letters WHERE vehicle_id = $1", vehicle_id
            )
            return [r["reason"] for r in rows]

        assert await eventually(dead) == ["hj212_crc"]
        rows = await pool.fetch(
            "SELECT pm25, lat, lon FROM walkthrough_readings WHERE vehicle_id = $1", vehicle_id
        )
        assert [tuple(r) for r in rows] == [pytest.approx((21.5, 39.9, 116.4))]
    finally:
        await worker.stop()
        await pool.close()


async def test_the_simulator_drives_its_fleet_as_hj212_data_loggers(
    database_url: str, pool: asyncpg.Pool, tcp: tuple[IngestWorker, int]
) -> None:
    from simulators.fleet import Fleet
    from simulators.hj212 import drive_hj212, register_analysers
    from simulators.network import load_network
    from simulators.plume import Plumes
    from simulators.walkthrough import DEFAULT_ROADS

    network = load_network(DEFAULT_ROADS)
    fleet = Fleet(network, Plumes([], network), vehicles=2, seed=1, prefix="hjsim-")
    stations = await register_analysers(Settings(database_url=database_url), fleet.vehicle_ids)
    sent, replies = await drive_hj212(
        fleet, stations, "127.0.0.1", tcp[1], asyncio.Event(), duration_s=2.5
    )
    assert sent >= 4 and replies == sent
    stored = await pool.fetchval(
        "SELECT count(*) FROM walkthrough_readings WHERE vehicle_id LIKE 'hjsim-%'"
    )
    assert stored == sent
    assert await reasons(pool) == []


async def test_an_mn_published_on_another_vehicles_topic_is_refused(
    pool: asyncpg.Pool, broker: Broker, tcp: tuple[IngestWorker, int]
) -> None:
    await register(pool, Station("hj-veh-6", "walkthrough", "MN0006", lat=39.9, lon=116.4))
    good = build_packet(segment("MN0006", cp=f"DataTime={data_time()};a34004-Rtd=5"))
    await eventually(lambda: asyncio.sleep(0, tcp[0].mqtt_connected))
    await asyncio.to_thread(publish, broker, "telemetry/walkthrough/hj-other-6", [good])
    await asyncio.to_thread(publish, broker, "telemetry/walkthrough/hj-veh-6", [good])

    async def settled() -> bool:
        stored = await readings(pool, "hj-veh-6")
        return bool(stored) and await reasons(pool) == ["hj212_mn_mismatch"]

    await eventually(settled)


async def test_connections_are_limited_and_idle_ones_closed(
    database_url: str, pool: asyncpg.Pool, broker: Broker
) -> None:
    port = free_port()
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"hj212-{uuid.uuid4().hex[:8]}",
        hj212_tcp_port=port,
        hj212_tcp_max_connections=1,
        hj212_tcp_idle_s=0.5,
    )
    worker = IngestWorker(settings, pool)
    await worker.start()
    try:
        first = await connect(port)
        second = await connect(port)
        assert await asyncio.wait_for(second.reader.read(), 5) == b""  # refused: closed at once
        assert await asyncio.wait_for(first.reader.read(), 5) == b""  # closed when idle
        first.writer.close()
        second.writer.close()
    finally:
        await worker.stop()
