"""The ingest worker's MQTT connection on literal bytes: packets split and joined across reads,
and what a broker must not send (malformed packets, topic aliases we did not allow, QoS 2,
answers to requests never made, a DISCONNECT), each closing the connection with the reason.

The connection runs on a real socket pair; the test writes the broker's side byte for byte.
The session behaviour against the real broker is in test_ingest_mqtt_session.py.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mqtt5 import PublishPacket, QoS
from support import eventually

from telemetry.ingest.mqtt import MqttConsumer
from telemetry.ingest.mqtt_protocol import (
    BrokerDisconnectedError,
    MalformedPacketError,
    MqttConnection,
    ProtocolViolationError,
    frame_length,
    pubacks,
)
from telemetry.kinds.contract import Message
from telemetry.settings import Settings

CONNACK = b"\x20\x03\x00\x00\x00"
SUBACK_1 = b"\x90\x04\x00\x01\x00\x01"  # packet id 1, no properties, granted QoS 1
PINGRESP = b"\xd0\x00"
# QoS 1 PUBLISH, topic "t/a", packet id 1 (then 2), no properties, payload "x" (then "yz").
PUBLISH_1 = b"\x32\x09\x00\x03t/a\x00\x01\x00x"
PUBLISH_2 = b"\x32\x0a\x00\x03t/a\x00\x02\x00yz"
# QoS 0 PUBLISH with properties: payload format 1, content type "a/b", user property (k, v).
PUBLISH_QOS0_PROPERTIES = (
    b"\x30\x17\x00\x03t/b"
    + b"\x0f"  # property length 15
    + b"\x01\x01"
    + b"\x03\x00\x03a/b"
    + b"\x26\x00\x01k\x00\x01v"
    + b"ok"
)


class Received:
    def __init__(self) -> None:
        self.packets: list[PublishPacket] = []

    def __call__(self, packet: PublishPacket, received_us: int) -> None:
        self.packets.append(packet)

    def summary(self) -> list[tuple[str, bytes, int | None]]:
        return [(p.topic, p.payload, p.packet_id) for p in self.packets]


class Peer:
    """A :class:`MqttConnection` on one end of a socket pair; the test is the broker."""

    def __init__(self, connection: MqttConnection, broker: socket.socket) -> None:
        self.connection = connection
        self.broker = broker

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.broker, data)

    async def read(self) -> bytes:
        """What the connection wrote, up to its closing."""
        chunks = []
        loop = asyncio.get_running_loop()
        while chunk := await loop.sock_recv(self.broker, 4096):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, Received]]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    received = Received()
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: MqttConnection(received, receive_maximum=100), sock=ours
    )
    yield Peer(connection, theirs), received
    connection.abort()
    theirs.close()


def _feed(data: bytes, cuts: list[int]) -> Received:
    """Hand ``data`` to a connection without a transport, split at ``cuts``."""
    received = Received()
    connection = MqttConnection(received)
    bounds = [0, *cuts, len(data)]
    for start, end in itertools.pairwise(bounds):
        connection.data_received(data[start:end])
    return received


def test_frame_length_reads_the_fixed_header() -> None:
    assert frame_length(b"\x32") is None
    assert frame_length(b"\x32\x09") == 11
    assert frame_length(b"\x30\x80") is None
    assert frame_length(b"\x30\x80\x01") == 3 + 128
    assert frame_length(b"\x30\xff\xff\xff\x7f") == 5 + 268_435_455
    with pytest.raises(MalformedPacketError):
        frame_length(b"\x30\xff\xff\xff\xff\x01")


async def test_packets_split_anywhere_across_reads_come_out_whole_and_in_order() -> None:
    stream = PUBLISH_1 + PUBLISH_QOS0_PROPERTIES + PUBLISH_2
    expected = [("t/a", b"x", 1), ("t/b", b"ok", None), ("t/a", b"yz", 2)]
    assert _feed(stream, []).summary() == expected
    for cut in range(1, len(stream)):
        assert _feed(stream, [cut]).summary() == expected, cut
    assert _feed(stream, list(range(1, len(stream)))).summary() == expected


async def test_a_packet_larger_than_one_read_is_put_together() -> None:
    payload = bytes(range(256)) * 1024
    packet = PublishPacket("t/big", payload, qos=QoS.AT_LEAST_ONCE, packet_id=9).write()
    received = _feed(packet + PUBLISH_1, list(range(3, len(packet), 65_536)))
    assert received.summary() == [("t/big", payload, 9), ("t/a", b"x", 1)]


async def test_publish_properties_are_read_and_the_message_kept(
    peer: tuple[Peer, Received],
) -> None:
    link, received = peer
    await link.send(PUBLISH_QOS0_PROPERTIES)
    await eventually(lambda: asyncio.sleep(0, received.packets))
    (packet,) = received.packets
    assert packet.content_type == "a/b"
    assert packet.user_properties == [("k", "v")]
    assert link.connection.is_open


def test_pubacks_go_out_as_one_buffer_in_the_order_given() -> None:
    assert pubacks([1, 0x1234, 65_535]) == (
        b"\x40\x02\x00\x01" + b"\x40\x02\x12\x34" + b"\x40\x02\xff\xff"
    )


@pytest.mark.parametrize(
    ("data", "error", "disconnect"),
    [
        pytest.param(b"\x32\x04\x00\x09ab", MalformedPacketError, b"\xe0\x01\x81", id="short"),
        pytest.param(b"\x00\x02\x00\x00", MalformedPacketError, b"\xe0\x01\x81", id="type 0"),
        pytest.param(
            b"\x30\xff\xff\xff\xff\x01", MalformedPacketError, b"\xe0\x01\x81", id="length"
        ),
        pytest.param(
            b"\x32\x09\x00\x03t/\xff\x00\x01\x00x", MalformedPacketError, b"\xe0\x01\x81",
            id="topic not UTF-8",
            # mqtt5 0.8 reports the UnicodeDecodeError as unraisable, then panics.
            marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
        ),
        pytest.param(
            b"\x32\x08\x00\x00\x00\x01\x03\x23\x00\x02",
            ProtocolViolationError,
            b"\xe0\x01\x94",
            id="topic alias",
        ),
        pytest.param(
            b"\x34\x09\x00\x03t/a\x00\x01\x00x", ProtocolViolationError, b"\xe0\x01\x9b",
            id="QoS 2",
        ),
        pytest.param(b"\x40\x02\x00\x01", ProtocolViolationError, b"\xe0\x01\x82", id="PUBACK"),
        pytest.param(PINGRESP, ProtocolViolationError, b"\xe0\x01\x82", id="PINGRESP unasked"),
        pytest.param(
            b"\x90\x04\x00\x07\x00\x01", ProtocolViolationError, b"\xe0\x01\x82",
            id="SUBACK unasked",
        ),
    ],
)  # fmt: skip
async def test_what_the_broker_must_not_send_closes_the_connection_with_the_reason(
    peer: tuple[Peer, Received], data: bytes, error: type[Exception], disconnect: bytes
) -> None:
    link, received = peer
    await link.send(PUBLISH_1 + data + PUBLISH_2)
    assert await link.read() == disconnect
    reason = await link.connection.closed
    assert isinstance(reason, error)
    # What came before is kept (its token dies with the connection); nothing after it is read.
    assert received.summary() == [("t/a", b"x", 1)]


async def test_a_disconnect_from_the_broker_closes_the_connection_with_its_reason(
    peer: tuple[Peer, Received],
) -> None:
    link, received = peer
    # DISCONNECT, reason "server shutting down" (0x8B), reason string "bye".
    await link.send(PUBLISH_1 + b"\xe0\x08\x8b\x06\x1f\x00\x03bye" + PUBLISH_2)
    assert await link.read() == b""  # nothing sent back
    reason = await link.connection.closed
    assert isinstance(reason, BrokerDisconnectedError)
    assert "SERVER_SHUTTING_DOWN (bye)" in str(reason)
    assert received.summary() == [("t/a", b"x", 1)]


async def test_reading_stops_at_receive_maximum_and_resumes_on_acknowledgement() -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    received = Received()
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: MqttConnection(received, receive_maximum=1), sock=ours
    )
    try:
        await loop.sock_sendall(theirs, PUBLISH_1)
        await eventually(lambda: asyncio.sleep(0, connection.reading_paused))
        await loop.sock_sendall(theirs, PUBLISH_2)
        connection.acknowledge([1])
        assert not connection.reading_paused
        await eventually(lambda: asyncio.sleep(0, len(received.packets) == 2))
        assert connection.reading_paused
        assert await loop.sock_recv(theirs, 16) == b"\x40\x02\x00\x01"
    finally:
        connection.abort()
        theirs.close()


class _Collector:
    def __init__(self) -> None:
        self.received: list[tuple[Message, Any]] = []

    def add(self, message: Message, token: Any) -> bool:
        self.received.append((message, token))
        return True


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(2)
    while header[-1] & 0x80:
        header += await reader.readexactly(1)
    length = frame_length(header)
    assert length is not None
    return header + await reader.readexactly(length - len(header))


async def test_the_consumer_reconnects_after_a_malformed_packet() -> None:
    """A broker of literal bytes: the first connection gets garbage after one message, the
    consumer closes it with 'malformed packet' and connects again."""
    disconnects: list[bytes] = []
    connections = 0

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        assert (await _read_packet(reader))[0] == 0x10  # CONNECT
        writer.write(CONNACK)
        assert (await _read_packet(reader))[0] == 0x82  # SUBSCRIBE
        writer.write(SUBACK_1)
        if connections == 1:
            writer.write(PUBLISH_1 + b"\x32\x04\x00\x09ab")
            disconnects.append(await reader.read())
        else:
            writer.write(PUBLISH_2)
            await reader.read()
        writer.close()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    intake = _Collector()
    settings = Settings(
        mqtt_url=f"mqtt://127.0.0.1:{port}",
        mqtt_client_id=f"frames-{uuid.uuid4().hex[:8]}",
        ingest_enabled=False,
    )
    consumer = MqttConsumer(settings, intake)
    await consumer.start()
    try:
        await eventually(lambda: asyncio.sleep(0, len(intake.received) == 2))
        first, second = intake.received
        assert (first[0].payload, second[0].payload) == (b"x", b"yz")
        assert first[1][0] < second[1][0]  # the second connection's generation
        assert disconnects[0].endswith(b"\xe0\x01\x81")
        await eventually(lambda: asyncio.sleep(0, consumer.connected))
    finally:
        await consumer.stop()
        server.close()
        await server.wait_closed()
