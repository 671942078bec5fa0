"""The MQTT side of ingest: a consumer whose PUBACKs wait for the database commit.

The session is persistent (clean start off, long session expiry), so whatever was not
acknowledged when the process died is redelivered to a worker with the same client id. The
connection is :mod:`telemetry.ingest.mqtt_protocol` (the ``mqtt5`` codec on an asyncio
protocol of our own); see docs/adr/0012-mqtt-client.md for why, and
docs/adr/0001-mqtt-client-and-acknowledgement.md for the acknowledgement it keeps.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Protocol

from mqtt5 import PublishPacket

from telemetry.ingest.mqtt_protocol import (
    ConnectOptions,
    MqttConnection,
    MqttError,
    open_connection,
)
from telemetry.kinds.contract import Message
from telemetry.metrics import MQTT_CONNECTED
from telemetry.settings import Settings

__all__ = ["Intake", "MqttConsumer"]

log = logging.getLogger(__name__)

#: Waits between connection attempts: doubled after each failure up to the maximum, shortened
#: by up to a half at random (workers restarted together do not retry in step), and back to
#: the first once a connection has lasted ``_STABLE_S`` (so that two workers sharing a client
#: id, taking the session over from each other, do not reconnect in a tight loop).
_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 10.0
_STABLE_S = 10.0
_DISCONNECT_WAIT_S = 5.0


class Intake(Protocol):
    def add(self, message: Message, token: Any) -> bool: ...


class MqttConsumer:
    """Subscribes to the telemetry topics and hands each message to ``intake`` with a token
    that :meth:`acknowledge` turns into a PUBACK once the message is committed.

    A QoS 1 message's token is (connection generation, packet id); a QoS 0 message has none.
    """

    def __init__(self, settings: Settings, intake: Intake) -> None:
        self._settings = settings
        self._intake = intake
        endpoint = settings.mqtt
        self._options = ConnectOptions(
            settings.mqtt_client_id,
            username=endpoint.username,
            password=endpoint.password,
            clean_start=False,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            keep_alive_s=settings.mqtt_keepalive_s,
            connect_timeout_s=settings.mqtt_connect_timeout_s,
        )
        self._generation = 0  # one more for every connection attempt
        self._connection: MqttConnection | None = None
        self._subscribed = False
        self._runner: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Connected and subscribed."""
        return self._subscribed and self._connection is not None and self._connection.is_open

    @property
    def connector(self) -> asyncio.Task[None] | None:
        """The task that connects, and reconnects whenever the connection ends, until
        :meth:`stop` (None before :meth:`start`)."""
        return self._runner

    async def start(self) -> None:
        """Connect in the background, retrying until the broker answers."""
        self._runner = asyncio.create_task(self._run(), name="mqtt-connect")

    async def stop(self) -> None:
        """Stop reconnecting; end the connection with a normal DISCONNECT (the session and
        what it holds unacknowledged stay at the broker)."""
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            await asyncio.wait([self._runner])
        connection, self._connection = self._connection, None
        self._subscribed = False
        if connection is not None and connection.is_open:
            connection.disconnect()
            await asyncio.wait([connection.closed], timeout=_DISCONNECT_WAIT_S)
            connection.abort()
        MQTT_CONNECTED.set(0)

    def acknowledge(self, tokens: Sequence[Any]) -> None:
        """Send PUBACK for committed messages received on the current connection. Messages
        from an earlier connection are left alone: the broker redelivers them after a
        reconnect, and that copy is acknowledged instead."""
        connection = self._connection
        if connection is None or not connection.is_open:
            return
        generation = self._generation
        # Tokens of other sources (HJ 212's TcpToken) have no int generation first.
        packet_ids = [t[1] for t in tokens if type(t) is tuple and t[0] == generation]
        connection.acknowledge(packet_ids)

    def _on_publish(self, packet: PublishPacket, received_us: int) -> None:
        packet_id = packet.packet_id
        # QoS 0 (a publisher that ignored the contract): stored the same way, nothing to ack.
        token = None if packet_id is None else (self._generation, packet_id)
        self._intake.add(Message(packet.topic, packet.payload, received_us), token)

    async def _run(self) -> None:
        endpoint = self._settings.mqtt
        delay = _FIRST_DELAY_S
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except (OSError, TimeoutError, MqttError) as exc:
                log.warning(
                    "MQTT broker %s:%s: %s; reconnecting",
                    endpoint.host,
                    endpoint.port,
                    exc or type(exc).__name__,
                )
            if time.monotonic() - started >= _STABLE_S:
                delay = _FIRST_DELAY_S
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_DELAY_S)

    async def _session(self) -> None:
        """One connection, from CONNECT until it is lost (raises why)."""
        endpoint = self._settings.mqtt
        self._generation += 1
        connection, connack = await open_connection(
            endpoint.host, endpoint.port, self._options, self._on_publish
        )
        self._connection = connection
        keep_alive: asyncio.Task[None] | None = None
        try:
            # Subscribing again on every (re)connect is harmless with a persistent session
            # and needed when the broker lost it (e.g. restarted without persistence).
            pattern = self._settings.mqtt_subscription
            async with asyncio.timeout(self._options.connect_timeout_s):
                await connection.subscribe(pattern, qos=1)
            self._subscribed = True
            MQTT_CONNECTED.set(1)
            log.info(
                "connected to MQTT broker (%s session); subscribed to %s",
                "resumed" if connack.session_present else "new",
                pattern,
            )
            keep_alive_s = connack.server_keep_alive or self._options.keep_alive_s
            keep_alive = asyncio.create_task(connection.keep_alive(keep_alive_s))
            error = await connection.closed
        except asyncio.CancelledError:
            raise  # stop() ends the connection, with a DISCONNECT
        except BaseException:
            connection.abort()
            raise
        finally:
            self._subscribed = False
            MQTT_CONNECTED.set(0)
            if keep_alive is not None:
                keep_alive.cancel()
        if error is not None:
            raise error
        raise MqttError("the connection closed")
