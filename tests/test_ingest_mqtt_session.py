"""The ingest worker's MQTT session against the project's real broker: persistent session,
Receive Maximum, PUBACK only after acknowledge (redelivery with DUP otherwise), reconnect with
back-off after a broker restart, keep-alive against a broker that stops answering, a DISCONNECT
from the broker, QoS 0 and MQTT v5 properties.

No timing is asserted. Where a test needs to know that the broker has sent all it is going to
send, it relies on the broker answering in order on one connection: once ``mosquitto_pub``
has its PUBACK the message has been handed to our session, and a PINGRESP we then ask for
comes after any PUBLISH the broker wrote to us for it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Broker, start_broker
from mqtt5 import PublishPacket
from support import eventually, publish

from telemetry.ingest.mqtt import MqttConsumer
from telemetry.ingest.mqtt_protocol import (
    ConnectOptions,
    MqttConnection,
    open_connection,
)
from telemetry.kinds.contract import Message
from telemetry.settings import MqttEndpoint, Settings


class Collector:
    """An intake that keeps what it is given."""

    def __init__(self) -> None:
        self.received: list[tuple[Message, Any]] = []

    def add(self, message: Message, token: Any) -> bool:
        self.received.append((message, token))
        return True

    def payloads(self) -> list[bytes]:
        return [m.payload for m, _ in self.received]

    def tokens(self) -> list[Any]:
        return [t for _, t in self.received]


def _prefix() -> str:
    """A topic subtree of the test's own on the shared broker."""
    return f"telemetry/t{uuid.uuid4().hex[:10]}"


def _settings(broker: Broker, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mqtt_url": broker.ingest_url,
        "mqtt_client_id": f"session-{uuid.uuid4().hex[:8]}",
        "mqtt_topic_prefix": prefix,
        "ingest_enabled": False,
    }
    return Settings(**(values | overrides))


def _options(broker: Broker, **overrides: Any) -> ConnectOptions:
    endpoint = MqttEndpoint(broker.ingest_url)
    values: dict[str, Any] = {
        "client_id": f"session-{uuid.uuid4().hex[:8]}",
        "username": endpoint.username,
        "password": endpoint.password,
        "session_expiry_s": 600,
    }
    return ConnectOptions(**(values | overrides))


async def _publish(broker: Broker, topic: str, payloads: list[bytes], *options: str) -> None:
    await asyncio.to_thread(publish, broker, topic, list(payloads), options=options)


async def _connected(consumer: MqttConsumer) -> None:
    await eventually(lambda: asyncio.sleep(0, consumer.connected))


class Packets:
    """What one :class:`MqttConnection` received: (packet, received_us) in order."""

    def __init__(self) -> None:
        self.packets: list[PublishPacket] = []

    def __call__(self, packet: PublishPacket, received_us: int) -> None:
        self.packets.append(packet)

    def payloads(self) -> list[bytes]:
        return [p.payload for p in self.packets]


async def _subscribed(
    broker: Broker, options: ConnectOptions, pattern: str
) -> tuple[MqttConnection, Packets]:
    packets = Packets()
    connection, _ = await open_connection(broker.host, broker.port, options, packets)
    await connection.subscribe(pattern)
    return connection, packets


async def _acknowledge_until(
    connection: MqttConnection, packets: Packets, count: int, acked: int = 0
) -> None:
    """Acknowledge what arrives until ``count`` messages have."""
    while acked < count:
        await eventually(lambda n=acked: asyncio.sleep(0, len(packets.packets) > n))
        connection.acknowledge([p.packet_id or 0 for p in packets.packets[acked:]])
        acked = len(packets.packets)


async def test_messages_published_while_the_consumer_is_down_arrive_when_it_is_back(
    broker: Broker,
) -> None:
    prefix = _prefix()
    settings = _settings(broker, prefix)
    first = MqttConsumer(settings, Collector())
    await first.start()
    await _connected(first)
    await first.stop()

    await _publish(broker, f"{prefix}/walkthrough/v1", [b"while-down-1", b"while-down-2"])

    intake = Collector()
    again = MqttConsumer(settings, intake)
    await again.start()
    try:
        await eventually(lambda: asyncio.sleep(0, len(intake.received) == 2))
        assert intake.payloads() == [b"while-down-1", b"while-down-2"]
        assert [m.topic for m, _ in intake.received] == [f"{prefix}/walkthrough/v1"] * 2
        assert all(isinstance(t, tuple) and t[1] > 0 for t in intake.tokens())
        again.acknowledge(intake.tokens())
    finally:
        await again.stop()


async def test_the_broker_sends_no_more_than_receive_maximum_while_nothing_is_acked(
    broker: Broker,
) -> None:
    prefix = _prefix()
    # Receive Maximum 5 in CONNECT; this side reads on up to 1,000 (see the next test).
    packets = Packets()
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: MqttConnection(packets, receive_maximum=1_000), broker.host, broker.port
    )
    await connection.handshake(_options(broker, receive_maximum=5))
    await connection.subscribe(f"{prefix}/#")
    try:
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"m%d" % i for i in range(12)])
        await connection.ping()
        assert packets.payloads() == [b"m%d" % i for i in range(5)]

        # Acknowledging lets the rest come, in order.
        await _acknowledge_until(connection, packets, 12)
        assert packets.payloads() == [b"m%d" % i for i in range(12)]
    finally:
        connection.disconnect()


async def test_the_connection_stops_reading_at_receive_maximum_whatever_the_broker_sends(
    broker: Broker,
) -> None:
    """Mosquitto 2.0.11 lets up to Receive Maximum more messages go for every PUBACK it gets;
    our side then stops reading until acknowledgements catch up."""
    prefix = _prefix()
    connection, packets = await _subscribed(
        broker, _options(broker, receive_maximum=5), f"{prefix}/#"
    )
    try:
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"m%d" % i for i in range(30)])
        await eventually(lambda: asyncio.sleep(0, len(packets.packets) == 5))
        assert connection.reading_paused
        connection.acknowledge([packets.packets[0].packet_id or 0])
        await eventually(lambda: asyncio.sleep(0, len(packets.packets) > 5))
        # Whatever the broker wrote meanwhile, reading stopped again at 5 unacknowledged
        # once the read that took us there was handled.
        await eventually(lambda: asyncio.sleep(0, connection.reading_paused))
        await _acknowledge_until(connection, packets, 30, acked=1)
        assert packets.payloads() == [b"m%d" % i for i in range(30)]
    finally:
        connection.disconnect()


async def test_a_message_not_acknowledged_is_redelivered_with_dup_after_the_connection_dies(
    broker: Broker,
) -> None:
    prefix = _prefix()
    options = _options(broker)
    connection, packets = await _subscribed(broker, options, f"{prefix}/#")
    await _publish(broker, f"{prefix}/walkthrough/v1", [b"kept", b"acked"])
    await eventually(lambda: asyncio.sleep(0, len(packets.packets) == 2))
    kept, acked = packets.packets
    assert not kept.duplicate and kept.qos == 1
    connection.acknowledge([acked.packet_id or 0])
    await connection.ping()  # the PUBACK has reached the broker before the connection dies
    connection.abort()
    await connection.closed

    again, redelivered = await _subscribed(broker, options, f"{prefix}/#")
    try:
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"marker"])
        await eventually(lambda: asyncio.sleep(0, b"marker" in redelivered.payloads()))
        assert redelivered.payloads() == [b"kept", b"marker"]
        assert redelivered.packets[0].duplicate
        assert redelivered.packets[0].packet_id == kept.packet_id
        assert not redelivered.packets[1].duplicate
    finally:
        again.disconnect()


async def test_the_consumer_acknowledges_only_what_it_is_told_to(broker: Broker) -> None:
    prefix = _prefix()
    settings = _settings(broker, prefix)
    intake = Collector()
    consumer = MqttConsumer(settings, intake)
    await consumer.start()
    await _connected(consumer)
    await _publish(broker, f"{prefix}/walkthrough/v1", [b"committed", b"not-committed"])
    await eventually(lambda: asyncio.sleep(0, len(intake.received) == 2))
    consumer.acknowledge(intake.tokens()[:1])
    await consumer.stop()

    intake = Collector()
    consumer = MqttConsumer(settings, intake)
    await consumer.start()
    try:
        await _connected(consumer)
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"marker"])
        await eventually(lambda: asyncio.sleep(0, b"marker" in intake.payloads()))
        assert intake.payloads() == [b"not-committed", b"marker"]
    finally:
        consumer.acknowledge(intake.tokens())
        await consumer.stop()


async def test_qos_0_messages_are_taken_without_a_token(broker: Broker) -> None:
    prefix = _prefix()
    intake = Collector()
    consumer = MqttConsumer(_settings(broker, prefix), intake)
    await consumer.start()
    try:
        await _connected(consumer)
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"at-most-once"], "-q", "0")
        await eventually(lambda: asyncio.sleep(0, len(intake.received) == 1))
        assert intake.received[0][0].payload == b"at-most-once"
        assert intake.received[0][1] is None
        consumer.acknowledge(intake.tokens())  # nothing to send; must not fail
    finally:
        await consumer.stop()


async def test_a_publish_with_mqtt_v5_properties_is_taken_as_any_other(broker: Broker) -> None:
    prefix = _prefix()
    intake = Collector()
    consumer = MqttConsumer(_settings(broker, prefix), intake)
    await consumer.start()
    try:
        await _connected(consumer)
        properties = (
            "-V", "mqttv5",
            "-D", "publish", "user-property", "origin", "unit-7",
            "-D", "publish", "content-type", "application/json",
            "-D", "publish", "payload-format-indicator", "1",
            "-D", "publish", "message-expiry-interval", "3600",
            "-D", "publish", "correlation-data", "abc",
            "-D", "publish", "response-topic", f"{prefix}/replies",
        )  # fmt: skip
        await _publish(broker, f"{prefix}/walkthrough/v1", [b'{"ts": 1}'], *properties)
        await eventually(lambda: asyncio.sleep(0, len(intake.received) == 1))
        message, token = intake.received[0]
        assert (message.topic, message.payload) == (f"{prefix}/walkthrough/v1", b'{"ts": 1}')
        assert token is not None
        consumer.acknowledge([token])
    finally:
        await consumer.stop()


async def test_a_connection_the_broker_ends_is_made_again(broker: Broker) -> None:
    prefix = _prefix()
    settings = _settings(broker, prefix)
    intake = Collector()
    consumer = MqttConsumer(settings, intake)
    await consumer.start()
    try:
        await _connected(consumer)
        # Another client with the same id takes the session over: the broker closes the
        # consumer's connection (Mosquitto 2.0.11 sends no DISCONNECT packet first; one that
        # does is tested in test_ingest_mqtt_frames.py). The consumer takes it back in turn.
        rival, _ = await open_connection(
            broker.host, broker.port, _options(broker, client_id=settings.mqtt_client_id), Packets()
        )
        await eventually(lambda: asyncio.sleep(0, not consumer.connected))
        await asyncio.wait_for(rival.closed, 30)
        await _connected(consumer)
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"after-takeover"])
        await eventually(lambda: asyncio.sleep(0, b"after-takeover" in intake.payloads()))
        consumer.acknowledge(intake.tokens())
    finally:
        await consumer.stop()


class OwnBroker:
    """A broker of the test's own, which it may restart (same port, same persistence) and
    freeze."""

    def __init__(self, workdir: Path, database_url: str) -> None:
        self._workdir = workdir
        self.current = start_broker(workdir, database_url=database_url)

    def _pid(self) -> int:
        return int((self.current.state_dir / "mosquitto.pid").read_text())

    def freeze(self) -> None:
        os.kill(self._pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)

    def stop(self) -> None:
        self.current.process.terminate()
        self.current.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.current = start_broker(
            self._workdir, self.current.port, database_url=self.current.database_url
        )


@pytest.fixture
def own_broker(tmp_path: Path, broker_database: str) -> Iterator[OwnBroker]:
    b = OwnBroker(tmp_path / "mosquitto", broker_database)
    yield b
    b.resume()
    b.stop()


async def test_the_consumer_reconnects_after_the_broker_restarts_and_gets_what_was_not_acked(
    own_broker: OwnBroker,
) -> None:
    broker = own_broker.current
    prefix = _prefix()
    intake = Collector()
    consumer = MqttConsumer(_settings(broker, prefix), intake)
    await consumer.start()
    try:
        await _connected(consumer)
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"before-restart"])
        await eventually(lambda: asyncio.sleep(0, len(intake.received) == 1))

        await asyncio.to_thread(own_broker.restart)
        await eventually(lambda: asyncio.sleep(0, not consumer.connected))
        await _connected(consumer)
        # Unacknowledged at the restart: the broker (persistent) delivers it again.
        await eventually(lambda: asyncio.sleep(0, len(intake.received) == 2))
        (_, old), (message, new) = intake.received
        assert message.payload == b"before-restart"
        assert old[0] < new[0]  # a token of the new connection
        # The first copy's token belongs to the dead connection: acknowledging it sends
        # nothing; the second copy's PUBACK goes out.
        consumer.acknowledge([old, new])
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"after-restart"])
        await eventually(lambda: asyncio.sleep(0, len(intake.received) == 3))
        assert intake.payloads()[2] == b"after-restart"
        consumer.acknowledge(intake.tokens()[2:])
    finally:
        await consumer.stop()


async def test_a_broker_that_stops_answering_is_noticed_by_keep_alive(
    own_broker: OwnBroker,
) -> None:
    broker = own_broker.current
    prefix = _prefix()
    intake = Collector()
    settings = _settings(broker, prefix, mqtt_keepalive_s=1, mqtt_connect_timeout_s=2)
    consumer = MqttConsumer(settings, intake)
    await consumer.start()
    try:
        await _connected(consumer)
        own_broker.freeze()
        await eventually(lambda: asyncio.sleep(0, not consumer.connected))
        own_broker.resume()
        await _connected(consumer)
        await _publish(broker, f"{prefix}/walkthrough/v1", [b"after-freeze"])
        await eventually(lambda: asyncio.sleep(0, b"after-freeze" in intake.payloads()))
    finally:
        own_broker.resume()
        await consumer.stop()
