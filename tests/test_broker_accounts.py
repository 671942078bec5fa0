"""Who may connect to the broker `telemetry broker run` starts, and what each account may do.

Every test runs against the session's broker and registers its own vehicles (ids unique to the
test) in the broker's accounts database with the `telemetry vehicles` command.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from conftest import INGEST_PASSWORD, INGEST_USERNAME, Broker
from gmqtt import Client
from support import MOSQUITTO_PUB, eventually

from telemetry.broker import vehicles
from telemetry.broker.config import Listeners, render_config
from telemetry.errors import ConflictError, ValidationError
from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.contract import Kind
from telemetry.settings import Settings
from telemetry.store.audit import Actor


def telemetry_command(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `telemetry ARGS` against the broker's accounts database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATABASE_URL"] = broker.database_url
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


OPERATOR = Actor(account_id=None, name="cli:tester")


def register(broker: Broker, kind: str = "walkthrough") -> tuple[str, str]:
    """Register a new vehicle; returns (vehicle id, password) from the command's last line."""
    vehicle_id = f"veh-{uuid.uuid4().hex[:10]}"
    out = telemetry_command(broker, "vehicles", "register", vehicle_id, "--kind", kind).stdout
    return vehicle_id, out.strip().splitlines()[-1]


def mosquitto_pub(
    broker: Broker, topic: str, payload: str, user: str | None, password: str | None
) -> subprocess.CompletedProcess[str]:
    """One QoS 1 MQTT v5 message with mosquitto_pub; an empty ``user`` connects anonymously."""
    command = [MOSQUITTO_PUB, "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5"]
    command += ["-q", "1", "-t", topic, "-m", payload]
    if user is not None:
        command += ["-u", user, "-P", password or ""]
    return subprocess.run(command, capture_output=True, text=True, timeout=10)


def accepted(result: subprocess.CompletedProcess[str]) -> bool:
    # mosquitto_pub exits 0 even when the broker answers a PUBLISH with "not authorized".
    return result.returncode == 0 and "Not authorized" not in result.stderr


def refused(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "Not authorized" in result.stderr


def reading(**extra: Any) -> str:
    return json.dumps({"ts": time.time_ns() // 1_000_000 - 1000, "lat": 39.99, "lon": 116.31,
                       "pm25": 12.0, **extra})  # fmt: skip


async def publish_once_registered(broker: Broker, vehicle: tuple[str, str], topic: str) -> None:
    """Publish one reading as ``vehicle`` once the broker has loaded its account."""

    async def sent() -> bool:
        result = await asyncio.to_thread(mosquitto_pub, broker, topic, reading(), *vehicle)
        return accepted(result)

    await eventually(sent)


@pytest.fixture
async def ingest(
    database_url: str, pool: asyncpg.Pool, broker: Broker, request: pytest.FixtureRequest
) -> AsyncIterator[IngestWorker]:
    """An ingest worker connected with the ingest service's own account; parametrize
    indirectly with a share group to subscribe with a shared subscription."""
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.plain_url,
        mqtt_username=INGEST_USERNAME,
        mqtt_password=INGEST_PASSWORD,
        mqtt_client_id=f"accounts-{uuid.uuid4().hex[:8]}",
        mqtt_share_group=getattr(request, "param", None),
        batch_max_age_ms=50,
    )
    worker = IngestWorker(settings, pool)
    await worker.start()

    async def subscribed() -> bool:
        return worker.mqtt_connected

    try:
        await eventually(subscribed)
        yield worker
    finally:
        await worker.stop()


async def stored_count(pool: asyncpg.Pool, vehicle_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM walkthrough_readings WHERE vehicle_id = $1", vehicle_id
        )
    )


def test_anonymous_client_and_wrong_password_are_refused(broker: Broker) -> None:
    vehicle_id, password = register(broker)
    topic = f"telemetry/walkthrough/{vehicle_id}"
    assert refused(mosquitto_pub(broker, topic, reading(), None, None))
    assert refused(mosquitto_pub(broker, topic, reading(), vehicle_id, password + "x"))
    assert refused(mosquitto_pub(broker, topic, reading(), "nobody", password))


async def test_registration_takes_effect_without_restarting_the_broker(broker: Broker) -> None:
    pid = broker.process.pid
    vehicle = register(broker)
    await publish_once_registered(broker, vehicle, f"telemetry/walkthrough/{vehicle[0]}")
    assert broker.process.poll() is None and broker.process.pid == pid


async def test_registered_vehicle_readings_are_stored(
    broker: Broker, pool: asyncpg.Pool, ingest: IngestWorker
) -> None:
    vehicle = register(broker)
    await publish_once_registered(broker, vehicle, f"telemetry/walkthrough/{vehicle[0]}")
    await eventually(lambda: stored_count(pool, vehicle[0]))


@pytest.mark.parametrize("ingest", ["ingest"], indirect=True)
async def test_ingest_account_subscribes_with_a_shared_subscription(
    broker: Broker, pool: asyncpg.Pool, ingest: IngestWorker
) -> None:
    assert ingest._settings.mqtt_subscription.startswith("$share/ingest/")
    vehicle = register(broker)
    await publish_once_registered(broker, vehicle, f"telemetry/walkthrough/{vehicle[0]}")
    await eventually(lambda: stored_count(pool, vehicle[0]))


async def test_vehicle_cannot_publish_as_another_vehicle_or_under_another_kind(
    broker: Broker, pool: asyncpg.Pool, ingest: IngestWorker
) -> None:
    (a, a_password), (b, _) = register(broker), register(broker)
    own = f"telemetry/walkthrough/{a}"
    await publish_once_registered(broker, (a, a_password), own)
    await eventually(lambda: stored_count(pool, a))
    for topic in (f"telemetry/walkthrough/{b}", f"telemetry/emergency/{a}", "telemetry/x"):
        assert not accepted(mosquitto_pub(broker, topic, reading(spoof=True), a, a_password))
    # A reading the broker takes after the refused ones: once it is stored, anything the
    # broker had forwarded before it would be stored too.
    assert accepted(mosquitto_pub(broker, own, reading(marker=True), a, a_password))

    async def marker_stored() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM walkthrough_readings WHERE extra ? 'marker'"
                " AND vehicle_id = $1",
                a,
            )
        )

    await eventually(marker_stored)
    assert await stored_count(pool, b) == 0
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    spoofed = "SELECT count(*) FROM walkthrough_readings WHERE extra ? 'spoof'"
    assert await pool.fetchval(spoofed) == 0


class Subscriber:
    """A gmqtt client that records what it receives and can make a round trip to the broker."""

    def __init__(self, user: str, password: str) -> None:
        self.client = Client(f"sub-{uuid.uuid4().hex[:8]}")
        self.client.set_auth_credentials(user, password)
        self.received: list[tuple[str, bytes]] = []
        self.subacks = 0
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_message(self, client: Client, topic: str, payload: bytes, qos: int, props: Any) -> int:
        self.received.append((topic, payload))
        return 0

    def _on_subscribe(self, *args: Any) -> None:
        self.subacks += 1

    async def subscribe(self, topic: str) -> None:
        """Subscribe and wait for the SUBACK, which the broker sends after every message it
        had already queued for this connection."""
        before = self.subacks
        self.client.subscribe(topic, qos=1)

        async def acknowledged() -> bool:
            return self.subacks > before

        await eventually(acknowledged)


async def test_vehicle_cannot_read_another_vehicles_stream(broker: Broker) -> None:
    (a, a_password), (b, b_password) = register(broker), register(broker)
    await publish_once_registered(broker, (b, b_password), f"telemetry/walkthrough/{b}")
    snoop = Subscriber(b, b_password)
    witness = Subscriber(broker.username, broker.password)  # may read the whole tree
    await snoop.client.connect(broker.host, broker.port)
    await witness.client.connect(broker.host, broker.port)
    try:
        await snoop.subscribe(f"telemetry/walkthrough/{a}")
        await snoop.subscribe("telemetry/#")
        await witness.subscribe(f"telemetry/walkthrough/{a}")
        await publish_once_registered(broker, (a, a_password), f"telemetry/walkthrough/{a}")

        async def witnessed() -> bool:
            return bool(witness.received)

        await eventually(witnessed)
        # Mosquitto hands a message to every subscriber at once; a round trip on the snoop's
        # connection after that brings in anything that was sent to it.
        await snoop.subscribe(f"telemetry/walkthrough/{b}")
        assert snoop.received == []
    finally:
        await snoop.client.disconnect()
        await witness.client.disconnect()


async def test_revoked_vehicle_is_disconnected_and_cannot_connect_or_publish(
    broker: Broker,
) -> None:
    vehicle_id, password = register(broker)
    topic = f"telemetry/walkthrough/{vehicle_id}"
    await publish_once_registered(broker, (vehicle_id, password), topic)
    client = Client(f"revoked-{vehicle_id}")
    client.set_auth_credentials(vehicle_id, password)
    client.set_config({"reconnect_retries": 0})
    disconnected = asyncio.Event()
    client.on_disconnect = lambda *args: disconnected.set()
    await client.connect(broker.host, broker.port)
    try:
        telemetry_command(broker, "vehicles", "revoke", vehicle_id)

        async def dropped() -> bool:
            return disconnected.is_set()

        await eventually(dropped)
        assert refused(mosquitto_pub(broker, topic, reading(), vehicle_id, password))
    finally:
        client.stop_reconnect()
        await client.disconnect()
    listed = telemetry_command(broker, "vehicles", "list").stdout
    assert any(line.startswith(f"{vehicle_id}\t") and "revoked" in line
               for line in listed.splitlines())  # fmt: skip


async def test_new_password_replaces_the_old_one(broker: Broker) -> None:
    vehicle_id, old = register(broker)
    topic = f"telemetry/walkthrough/{vehicle_id}"
    await publish_once_registered(broker, (vehicle_id, old), topic)
    with pytest.raises(subprocess.CalledProcessError) as again:
        telemetry_command(broker, "vehicles", "register", vehicle_id, "--kind", "walkthrough")
    assert "already registered" in again.value.stderr
    out = telemetry_command(
        broker, "vehicles", "register", vehicle_id, "--kind", "walkthrough", "--new-password"
    ).stdout
    new = out.strip().splitlines()[-1]
    await publish_once_registered(broker, (vehicle_id, new), topic)
    assert refused(mosquitto_pub(broker, topic, reading(), vehicle_id, old))


async def test_simulators_never_take_over_a_vehicle_a_person_registered(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await vehicles.register(conn, "walk-001", "walkthrough", actor=OPERATOR)
        with pytest.raises(ConflictError, match="walk-001"):
            await vehicles.register_simulated(conn, [("walk-001", Kind.WALKTHROUGH)])
        first = await vehicles.register_simulated(conn, [("sim-1", Kind.WALKTHROUGH)])
        second = await vehicles.register_simulated(conn, [("sim-1", Kind.WALKTHROUGH)])
        assert first["sim-1"] != second["sim-1"]  # a new password on every run


async def test_registration_refuses_ids_that_cannot_be_accounts_and_unknown_kinds(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        for bad in ("a/b", "a+", "#", "a:b", "", "x" * 65, "with space"):
            with pytest.raises(ValidationError):
                await vehicles.register(conn, bad, "walkthrough", actor=OPERATOR)
        with pytest.raises(ValidationError, match="unknown vehicle kind"):
            await vehicles.register(conn, "ok-1", "submarine", actor=OPERATOR)
        with pytest.raises(ConflictError):
            await vehicles.register(
                conn,
                "telemetry-ingest",
                "walkthrough",
                actor=OPERATOR,
                reserved={"telemetry-ingest"},
            )


def test_broker_refuses_a_shared_configuration_with_its_own_listener_or_anonymous_access(
    tmp_path: Any,
) -> None:
    for line in ("listener 1883", "allow_anonymous true", "password_file /etc/x"):
        with pytest.raises(ValidationError, match=line.split()[0]):
            render_config(f"persistence true\n{line}\n", Listeners(1883), tmp_path)
    conf = render_config("persistence true\n", Listeners(1883, certfile="c", keyfile="k"), tmp_path)
    assert "allow_anonymous false" in conf
    assert "listener 1883 127.0.0.1" in conf and "listener 8883 127.0.0.1" in conf


def test_ingest_account_settings_take_the_url_or_their_own_and_refuse_a_conflict() -> None:
    from_url = Settings(mqtt_url="mqtt://svc:pw@broker:1883")
    assert (from_url.mqtt.username, from_url.mqtt.password) == ("svc", "pw")
    own = Settings(mqtt_url="mqtt://broker:1883", mqtt_username="svc", mqtt_password="pw")
    assert (own.mqtt.username, own.mqtt.password, own.mqtt.host) == ("svc", "pw", "broker")
    with pytest.raises(ValueError, match="differ"):
        Settings(mqtt_url="mqtt://svc:pw@broker:1883", mqtt_password="other")
    with pytest.raises(ValueError, match="both"):
        Settings(mqtt_username="svc")


async def test_registering_and_revoking_a_vehicle_is_audited(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await vehicles.register(conn, "walk-007", "walkthrough", actor=OPERATOR)
        await vehicles.revoke(conn, "walk-007", actor=OPERATOR)
        with pytest.raises(ConflictError):
            await vehicles.register(conn, "walk-007", "walkthrough", actor=OPERATOR)
        rows = await conn.fetch(
            "SELECT account, action, after FROM audit_log WHERE entity = 'vehicle' "
            "AND entity_id = 'walk-007' ORDER BY id"
        )
    assert [(r["account"], r["action"]) for r in rows] == [
        ("cli:tester", "register"),
        ("cli:tester", "revoke"),
    ]
    assert rows[1]["after"]["enabled"] is False
