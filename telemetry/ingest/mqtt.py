"""The MQTT side of ingest: a gmqtt client whose PUBACKs wait for the database commit.

The session is persistent (clean start off, long session expiry), so whatever was not
acknowledged when the process died is redelivered to a worker with the same client id.
See docs/adr/0001-mqtt-client-and-acknowledgement.md for why gmqtt and why the hook below.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import gmqtt
import numpy as np
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.constants import UNLIMITED_RECONNECTS, MQTTv50
from gmqtt.mqtt.handler import MQTTConnectError, MqttPackageHandler
from gmqtt.mqtt.protocol import MQTTProtocol

from telemetry.errors import UnsupportedLibraryError
from telemetry.kinds.contract import Message
from telemetry.metrics import MQTT_CONNECTED
from telemetry.settings import Settings

__all__ = ["SUPPORTED_GMQTT", "Intake", "MqttConsumer", "check_gmqtt_internals"]

log = logging.getLogger(__name__)

#: The gmqtt releases whose internals the hooks below were written against and tested with.
SUPPORTED_GMQTT = "0.8"
#: What the hooks replace or call: gmqtt dispatches an incoming packet to the handler's
#: ``_handle_<command>_packet`` looked up by name, its PUBLISH handler calls
#: ``_handle_qos_1_publish_packet``, and PUBACKs are written through the connection's protocol.
_HOOKED: tuple[tuple[type[Any], str], ...] = (
    (gmqtt.Client, "_package_handler"),
    (gmqtt.Client, "_connection"),
    (MqttPackageHandler, "_handle_publish_packet"),
    (MqttPackageHandler, "_handle_qos_1_publish_packet"),
    (MQTTConnection, "_protocol"),
    (MQTTProtocol, "write_data"),
)


def _defines(cls: type[Any], name: str) -> bool:
    """A class attribute of ``cls``, or an attribute its ``__init__`` assigns."""
    init = getattr(cls.__init__, "__code__", None)
    return hasattr(cls, name) or (init is not None and name in init.co_names)


def check_gmqtt_internals(
    version: str, hooked: tuple[tuple[type[Any], str], ...] = _HOOKED
) -> None:
    """Stop with :class:`UnsupportedLibraryError` unless gmqtt is the supported release and
    has every internal the hooks use: a renamed method would leave a hook silently unused
    (then nothing is acknowledged, or messages are acknowledged before their commit)."""
    if version.split(".")[:2] != SUPPORTED_GMQTT.split("."):
        raise UnsupportedLibraryError(
            f"gmqtt {version} is installed; the ingest worker hooks gmqtt internals and supports "
            f"gmqtt {SUPPORTED_GMQTT}.x only"
        )
    for cls, name in hooked:
        if not _defines(cls, name):
            raise UnsupportedLibraryError(
                f"gmqtt {version}: {cls.__qualname__} has no {name!r}, which the ingest worker "
                f"hooks; install gmqtt {SUPPORTED_GMQTT}.x"
            )


class Intake(Protocol):
    def add(self, message: Message, token: Any) -> bool: ...


class MqttConsumer:
    """Subscribes to the telemetry topics and hands each message to ``intake`` with a token
    that :meth:`acknowledge` turns into a PUBACK once the message is committed."""

    def __init__(self, settings: Settings, intake: Intake) -> None:
        self._settings = settings
        self._intake = intake
        self._generation = 0
        check_gmqtt_internals(gmqtt.__version__)
        client = gmqtt.Client(
            settings.mqtt_client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            session_expiry_interval=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
        )
        endpoint = settings.mqtt
        if endpoint.username:
            client.set_auth_credentials(endpoint.username, endpoint.password)
        client.set_config({"reconnect_retries": UNLIMITED_RECONNECTS, "reconnect_delay": 2})
        client.on_message = self._on_message
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        # gmqtt (0.8) runs every QoS 1 message through its own asyncio task and sends the PUBACK
        # when that task ends: at 20,000 msg/s those tasks took about half the process's CPU.
        # Taking the packet here instead makes intake a list append, and the PUBACKs go out in
        # one write after the batch commits (acknowledge). Pinned to gmqtt 0.8.x for this.
        handler = client._package_handler
        handler._handle_qos_1_publish_packet = self._on_qos1
        # Likewise its PUBLISH parser decodes every packet's MQTT v5 properties in Python (a
        # tenth of the process at 20,000 msg/s). The common packet — QoS 1, no properties — is
        # split here; any other (QoS 0, properties, topic aliases) goes to gmqtt's parser.
        self._parse_publish = handler._handle_publish_packet
        handler._handle_publish_packet = self._on_publish
        self._client = client
        self._connecting: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected)

    @property
    def connector(self) -> asyncio.Task[None] | None:
        """The task connecting to the broker (None before :meth:`start`); it ends once
        connected, after which gmqtt reconnects by itself."""
        return self._connecting

    def _on_publish(self, cmd: int, packet: bytes) -> None:
        # PUBLISH variable header: topic (2-byte length + UTF-8), packet id, property length.
        if cmd & 0x06 == 0x02 and len(packet) > 4:
            end = 2 + ((packet[0] << 8) | packet[1])
            if len(packet) > end + 2 and packet[end + 2] == 0 and end > 2:
                try:
                    topic = packet[2:end].decode()
                except UnicodeDecodeError:
                    pass
                else:
                    self._on_qos1(
                        (packet[end] << 8) | packet[end + 1], packet[end + 3 :], topic, None
                    )
                    return
        self._parse_publish(cmd, packet)

    def _on_qos1(self, mid: int, payload: bytes, topic: str, properties: Any) -> None:
        message = Message(topic, payload, time.time_ns() // 1000)
        self._intake.add(message, (self._generation, mid))

    def _on_message(
        self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any
    ) -> None:
        # QoS 0 (a publisher that ignored the contract): stored the same way, nothing to ack.
        self._intake.add(Message(topic, payload, time.time_ns() // 1000), None)

    def acknowledge(self, tokens: Sequence[Any]) -> None:
        """Send PUBACK for committed messages received on the current connection. Messages
        from an earlier connection are left alone: the broker redelivers them after a
        reconnect, and that copy is acknowledged instead."""
        if not self._client.is_connected:
            return
        generation = self._generation
        mids = [t[1] for t in tokens if t is not None and t[0] == generation]
        if mids:
            # One write for the whole batch: PUBACK, remaining length 2, packet id; MQTT v5
            # §3.4.2.1 lets a success PUBACK without properties omit reason code and length.
            packets = np.empty((len(mids), 4), dtype=np.uint8)
            packets[:, 0] = 0x40
            packets[:, 1] = 2
            packets[:, 2:] = np.array(mids, dtype=">u2").view(np.uint8).reshape(-1, 2)
            self._client._connection._protocol.write_data(packets.tobytes())

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: Any) -> None:
        self._generation += 1
        MQTT_CONNECTED.set(1)
        # Subscribing again on every (re)connect is harmless with a persistent session and
        # needed when the broker lost it (e.g. restarted without persistence).
        client.subscribe(self._settings.mqtt_subscription, qos=1)
        log.info("connected to MQTT broker; subscribed to %s", self._settings.mqtt_subscription)

    def _on_disconnect(
        self, client: gmqtt.Client, packet: Any, exc: Exception | None = None
    ) -> None:
        MQTT_CONNECTED.set(0)
        log.warning("disconnected from MQTT broker%s", f": {exc}" if exc else "")

    async def start(self) -> None:
        """Connect in the background, retrying until the broker answers."""
        self._connecting = asyncio.create_task(self._connect_until_up(), name="mqtt-connect")

    async def _connect_until_up(self) -> None:
        endpoint = self._settings.mqtt
        delay = 0.5
        while True:
            try:
                await self._client.connect(
                    endpoint.host, endpoint.port, version=MQTTv50, keepalive=30
                )
                return
            except (OSError, MQTTConnectError) as exc:
                log.warning(
                    "MQTT broker %s:%s unreachable (%s); retrying",
                    endpoint.host,
                    endpoint.port,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._client.is_connected:
            await self._client.disconnect()
        MQTT_CONNECTED.set(0)
