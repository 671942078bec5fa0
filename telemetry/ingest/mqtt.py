"""The MQTT side of ingest: a gmqtt client whose PUBACK waits for the database commit.

gmqtt with ``optimistic_acknowledgement=False`` sends PUBACK only after the async message
handler returns, and sends none if it raises (docs/adr/0001). The session is persistent
(clean start off, long session expiry), so whatever was not acknowledged when the process
died is redelivered when a worker with the same client id reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import UNLIMITED_RECONNECTS, MQTTv50
from gmqtt.mqtt.handler import MQTTConnectError

from telemetry.ingest.decode import Message
from telemetry.ingest.metrics import MQTT_CONNECTED
from telemetry.settings import Settings

__all__ = ["MqttConsumer"]

log = logging.getLogger(__name__)

Submit = Callable[[Message], Awaitable[None]]


class MqttConsumer:
    """Subscribes to the telemetry topics and hands each message to ``submit``."""

    def __init__(self, settings: Settings, submit: Submit) -> None:
        self._settings = settings
        self._submit = submit
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
        self._client = client
        self._connecting: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected)

    async def _on_message(
        self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any
    ) -> int:
        await self._submit(Message(topic, payload, time.time_ns() // 1000))
        return 0  # PUBACK reason code: success

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: Any) -> None:
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
                    "MQTT broker %s:%s not reachable (%s); retrying",
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
