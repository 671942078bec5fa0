"""One MQTT v5 connection on asyncio, as the ingest worker needs it and no more.

The ``mqtt5`` package (a Rust codec, strict on what it reads) parses and writes the packets;
this module frames them out of whatever the socket delivers, keeps the connection's state
(CONNACK, SUBACK, PINGRESP, a DISCONNECT from the broker) and writes PUBACKs when it is told
to, a whole batch in one write. Everything the broker sends that MQTT v5 or our CONNECT does
not allow closes the connection with the reason, so the owner reconnects on a clean state.
Why a protocol of our own rather than a client library: docs/adr/0012-mqtt-client.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mqtt5
import numpy as np
from mqtt5 import DisconnectReasonCode, PublishPacket

from telemetry.errors import TelemetryError

__all__ = [
    "BrokerDisconnectedError",
    "ConnectOptions",
    "MalformedPacketError",
    "MqttConnection",
    "MqttError",
    "ProtocolViolationError",
    "RefusedError",
    "frame_length",
    "open_connection",
]

log = logging.getLogger(__name__)

#: Called for every PUBLISH, with the time (epoch µs) the read that held it returned.
OnPublish = Callable[[PublishPacket, int], None]


class MqttError(TelemetryError):
    """The connection to the broker cannot go on; its owner reconnects."""


class MalformedPacketError(MqttError):
    """The broker sent bytes that are no valid MQTT v5 packet."""


class ProtocolViolationError(MqttError):
    """A valid packet that the broker must not send on this connection."""

    def __init__(self, message: str, reason: DisconnectReasonCode) -> None:
        super().__init__(message)
        self.reason = reason


class RefusedError(MqttError):
    """The broker refused the connection or the subscription (bad account, not authorized)."""


class BrokerDisconnectedError(MqttError):
    """The broker closed the connection with a DISCONNECT packet, or stopped answering."""


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """What goes into CONNECT. Keep-alive and receive maximum follow MQTT v5 (§3.1.2.10,
    §3.1.2.11.3); ``connect_timeout_s`` bounds the TCP connect and the wait for CONNACK."""

    client_id: str
    username: str | None = None
    password: str | None = None
    clean_start: bool = False
    session_expiry_s: int = 0
    receive_maximum: int = 65_535
    keep_alive_s: int = 30
    connect_timeout_s: float = 10.0


def frame_length(buffer: bytes | memoryview) -> int | None:
    """Length of the packet that starts ``buffer``, from its fixed header (§2.1.4); None while
    the header itself is incomplete."""
    remaining = 0
    for i in range(1, min(len(buffer), 5)):
        byte = buffer[i]
        remaining |= (byte & 0x7F) << (7 * (i - 1))
        if not byte & 0x80:
            return 1 + i + remaining
    if len(buffer) >= 5:
        raise MalformedPacketError("remaining length longer than four bytes")
    return None


def _is_codec_error(exc: BaseException) -> bool:
    # mqtt5 raises ValueError for a malformed packet, and (0.8) pyo3's PanicException, a
    # BaseException, for a string field that is not UTF-8.
    return isinstance(exc, ValueError | IndexError) or type(exc).__name__ == "PanicException"


def pubacks(packet_ids: Sequence[int]) -> bytes:
    """PUBACK packets for ``packet_ids``, back to back: fixed header, remaining length 2, the
    packet id. MQTT v5 §3.4.2.1 lets a success PUBACK without properties omit reason code and
    property length."""
    packets = np.empty((len(packet_ids), 4), dtype=np.uint8)
    packets[:, 0] = 0x40
    packets[:, 1] = 2
    packets[:, 2:] = np.asarray(packet_ids, dtype=">u2").view(np.uint8).reshape(-1, 2)
    return packets.tobytes()


class MqttConnection(asyncio.Protocol):
    """The client side of one connection: reads packets in bulk, hands each PUBLISH to
    ``on_publish`` and answers only when asked (:meth:`acknowledge`).

    It also holds the Receive Maximum itself: once ``receive_maximum`` QoS 1 messages are
    unacknowledged it stops reading until acknowledgements bring them below it again.
    Mosquitto 2.0.11 honours the Receive Maximum only until the first PUBACK; after that each
    PUBACK lets it send up to Receive Maximum more (docs/adr/0012-mqtt-client.md), so without
    this the intake bound would be the broker's whole queue.
    """

    def __init__(self, on_publish: OnPublish, receive_maximum: int = 65_535) -> None:
        self._on_publish = on_publish
        self._receive_maximum = receive_maximum
        self._unacked = 0  # QoS 1 messages received on this connection and not acknowledged
        self._paused = False
        self._transport: asyncio.Transport | None = None
        self._tail: list[bytes] = []  # an incomplete packet's bytes, read so far
        self._tail_size = 0
        self._tail_needed = 0  # bytes to wait for before parsing the tail again
        loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[mqtt5.ConnAckPacket] = loop.create_future()
        self._subacks: dict[int, asyncio.Future[mqtt5.SubAckPacket]] = {}
        self._pings: deque[asyncio.Future[None]] = deque()
        self._next_packet_id = 0
        self._error: MqttError | None = None
        #: Resolves when the connection is lost: to the reason, or None when it closed without
        #: one (our own close, or the broker's without a DISCONNECT packet).
        self.closed: asyncio.Future[MqttError | None] = loop.create_future()

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = self._error
        if error is None and exc is not None:
            error = BrokerDisconnectedError(f"connection lost: {exc}")
        gone = ConnectionError("the MQTT connection is closed")
        waiting: list[asyncio.Future[Any]] = [self._connack, *self._subacks.values(), *self._pings]
        for future in waiting:
            if not future.done():
                future.set_exception(gone)
        self._subacks.clear()
        self._pings.clear()
        if not self.closed.done():
            self.closed.set_result(error)

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        if self._tail:
            self._tail.append(data)
            self._tail_size += len(data)
            if self._tail_size < self._tail_needed:
                return
            data = b"".join(self._tail)
            self._tail = []
        received_us = time.time_ns() // 1000
        view = memoryview(data)
        end = len(data)
        pos = 0
        unacked = self._unacked
        try:
            while pos < end:
                try:
                    packet, size = mqtt5.read(view[pos:])
                except IndexError:
                    # The codec ran out of bytes: the packet's end has not arrived yet, or it
                    # has and the packet's content is shorter than its header says.
                    needed = frame_length(view[pos:])
                    if needed is not None and pos + needed <= end:
                        raise MalformedPacketError("packet shorter than its length") from None
                    break
                pos += size
                if type(packet) is PublishPacket:
                    if packet.topic_alias is not None or packet.qos == 2:
                        self._check_publish(packet)
                    if packet.packet_id is not None:
                        unacked += 1
                    self._on_publish(packet, received_us)
                else:
                    self._dispatch(packet)
        except MqttError as exc:
            self._close_with(exc)
            return
        except BaseException as exc:
            if not _is_codec_error(exc):
                raise
            self._close_with(MalformedPacketError(f"malformed packet: {exc}"))
            return
        finally:
            self._unacked = unacked
        if unacked >= self._receive_maximum and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        if pos < end:
            rest = data[pos:]
            self._tail = [rest]
            self._tail_size = len(rest)
            self._tail_needed = frame_length(rest) or len(rest) + 1

    # --- what the broker sends ---------------------------------------------------------------

    def _check_publish(self, packet: PublishPacket) -> None:
        if packet.topic_alias is not None:
            # Our CONNECT announces Topic Alias Maximum 0: the broker must send none (§3.1.2.11.5).
            raise ProtocolViolationError(
                "the broker sent a topic alias", DisconnectReasonCode.TOPIC_ALIAS_INVALID
            )
        raise ProtocolViolationError(
            "the broker sent QoS 2 on a QoS 1 subscription", DisconnectReasonCode.QOS_NOT_SUPPORTED
        )

    def _dispatch(self, packet: mqtt5.Packet) -> None:
        if isinstance(packet, mqtt5.SubAckPacket):
            future = self._subacks.pop(packet.packet_id, None)
            if future is None:
                raise _unexpected(packet)
            if not future.done():
                future.set_result(packet)
        elif isinstance(packet, mqtt5.PingRespPacket):
            if not self._pings:
                raise _unexpected(packet)
            ping = self._pings.popleft()
            if not ping.done():
                ping.set_result(None)
        elif isinstance(packet, mqtt5.ConnAckPacket):
            if self._connack.done():
                raise _unexpected(packet)
            self._connack.set_result(packet)
        elif isinstance(packet, mqtt5.DisconnectPacket):
            why = packet.reason_code.name
            if packet.reason_str:
                why += f" ({packet.reason_str})"
            raise BrokerDisconnectedError(f"the broker disconnected us: {why}")
        else:
            # PUBACK, PUBREC, PUBCOMP, UNSUBACK: answers to what we never send; PUBREL: QoS 2;
            # AUTH: we ask for no enhanced authentication; CONNECT, SUBSCRIBE, …: client only.
            raise _unexpected(packet)

    def _close_with(self, error: MqttError) -> None:
        """Close the connection because of ``error``, telling the broker why when the fault
        is on its side (§4.13)."""
        if self._error is not None:
            return
        self._error = error
        self._tail = []
        reason = None
        if isinstance(error, MalformedPacketError):
            reason = DisconnectReasonCode.MALFORMED_PACKET
        elif isinstance(error, ProtocolViolationError):
            reason = error.reason
        log.warning("closing the MQTT connection: %s", error)
        if self._transport is not None and not self._transport.is_closing():
            if reason is not None:
                self._transport.write(mqtt5.DisconnectPacket(reason_code=reason).write())
            self._transport.close()

    # --- what we send ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("the MQTT connection is closed")
        self._transport.write(data)

    async def handshake(self, options: ConnectOptions) -> mqtt5.ConnAckPacket:
        """Send CONNECT and return the broker's CONNACK; :class:`RefusedError` if it refuses."""
        password = options.password.encode() if options.password is not None else None
        self._write(
            mqtt5.ConnectPacket(
                options.client_id,
                username=options.username,
                password=password,
                clean_start=options.clean_start,
                keep_alive=options.keep_alive_s,
                session_expiry_interval=options.session_expiry_s,
                receive_max=options.receive_maximum,
                topic_alias_max=0,
            ).write()
        )
        connack = await self._connack
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            self.abort()
            raise RefusedError(f"the broker refused the connection: {connack.reason_code.name}")
        return connack

    async def subscribe(self, pattern: str, qos: int = 1) -> mqtt5.SubAckReasonCode:
        """Subscribe to ``pattern`` at most at ``qos``; the code the broker granted, or
        :class:`RefusedError` when it refused."""
        self._next_packet_id = self._next_packet_id % 65_535 + 1
        packet_id = self._next_packet_id
        future: asyncio.Future[mqtt5.SubAckPacket] = asyncio.get_running_loop().create_future()
        self._subacks[packet_id] = future
        topic_filter = mqtt5.TopicFilter(pattern, max_qos=mqtt5.QoS(qos))
        self._write(mqtt5.SubscribePacket(packet_id, [topic_filter]).write())
        (code,) = (await future).reason_codes
        if int(code) >= 0x80:
            raise RefusedError(f"the broker refused the subscription to {pattern}: {code.name}")
        return code

    async def ping(self) -> None:
        """Send PINGREQ and wait for its PINGRESP."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._write(b"\xc0\x00")
        self._pings.append(future)
        await future

    async def keep_alive(self, keep_alive_s: float) -> None:
        """Ping every half keep-alive; a PINGRESP that takes longer than the keep-alive means
        the broker (or the path to it) is dead, and the connection is closed. Not while
        reading is paused: the PINGRESP then waits, unread, behind the messages."""
        while self.is_open:
            await asyncio.sleep(keep_alive_s / 2)
            try:
                await asyncio.wait_for(self.ping(), keep_alive_s)
            except TimeoutError:
                if self._paused:
                    continue
                self._close_with(BrokerDisconnectedError("no PINGRESP within the keep-alive"))
                if self._transport is not None:
                    self._transport.abort()
                return
            except ConnectionError:
                return

    def acknowledge(self, packet_ids: Sequence[int]) -> None:
        """PUBACK every packet of ``packet_ids``, in one write."""
        if packet_ids:
            self._write(pubacks(packet_ids))
            self._unacked = max(0, self._unacked - len(packet_ids))
            if self._paused and self._unacked < self._receive_maximum:
                self._paused = False
                assert self._transport is not None
                self._transport.resume_reading()

    @property
    def reading_paused(self) -> bool:
        """Reading stopped: Receive Maximum messages wait for their acknowledgement."""
        return self._paused

    def disconnect(self) -> None:
        """Normal DISCONNECT (the session stays, for its expiry interval), then close."""
        if self.is_open:
            assert self._transport is not None
            self._transport.write(mqtt5.DisconnectPacket().write())
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _unexpected(packet: mqtt5.Packet) -> ProtocolViolationError:
    return ProtocolViolationError(
        f"the broker sent an unexpected {type(packet).__name__}",
        DisconnectReasonCode.PROTOCOL_ERROR,
    )


async def open_connection(
    host: str, port: int, options: ConnectOptions, on_publish: OnPublish
) -> tuple[MqttConnection, mqtt5.ConnAckPacket]:
    """Connect to the broker and complete the MQTT handshake within the connect timeout."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(options.connect_timeout_s):
        _, connection = await loop.create_connection(
            lambda: MqttConnection(on_publish, options.receive_maximum), host, port
        )
        try:
            connack = await connection.handshake(options)
        except BaseException:
            connection.abort()
            raise
    return connection, connack
