"""Publishing readings over MQTT v5 at QoS 1 with gmqtt, one connection per :class:`Publisher`.

The publisher keeps at most the broker's Receive Maximum of messages unacknowledged (gmqtt
raises once its packet identifiers run out, so the window is enforced here), counts PUBACKs,
and lets gmqtt reconnect after a broker loss: the session is persistent, so messages still
unacknowledged when the connection dropped are sent again on reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from gmqtt import Client, Message
from gmqtt.storage import PersistentStorage

from simulators.fleet import Fleet, Reading
from telemetry.errors import TelemetryError
from telemetry.kinds.contract import Kind
from telemetry.settings import MqttEndpoint

__all__ = ["PublishError", "Publisher", "drive_fleet", "encode", "topic_for"]

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_DEFAULT_RECEIVE_MAXIMUM = 65_535


class PublishError(TelemetryError):
    """The broker could not be reached or (``refused``) refused the connection."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def topic_for(prefix: str, vehicle_id: str, kind: Kind = Kind.WALKTHROUGH) -> str:
    """The contract topic ``{prefix}/{kind}/{vehicle_id}``."""
    return f"{prefix}/{kind.value}/{vehicle_id}"


def encode(readings: Reading | list[Reading]) -> bytes:
    """A reading (or a buffered list of them) as the UTF-8 JSON payload."""
    return _encoder.encode(readings)


class _InflightStore(PersistentStorage):
    """gmqtt's store of unacknowledged QoS 1 packets, counting acknowledgements and keeping
    the packets a broker without our session would otherwise make gmqtt forget."""

    def __init__(self, on_change: Any) -> None:
        super().__init__()
        self._mids: set[int] = set()
        self._on_change = on_change
        self.acknowledged = 0
        self.orphaned: list[tuple[int, bytes]] = []

    def push_message(self, mid: int, raw_package: bytes) -> None:
        self._mids.add(mid)
        super().push_message(mid, raw_package)

    def remove_message_by_mid(self, mid: int) -> None:
        if mid in self._mids:
            self._mids.discard(mid)
            self.acknowledged += 1
        super().remove_message_by_mid(mid)
        self._on_change()

    def clear(self) -> None:
        # gmqtt clears when the broker reports no session (e.g. it restarted without
        # persistence); it neither resends these packets nor frees their identifiers.
        self.orphaned.extend(self.get_all())
        self._mids.clear()
        super().clear()

    @property
    def inflight(self) -> int:
        return len(self._mids)


class Publisher:
    """One persistent-session MQTT v5 connection publishing QoS 1 messages.

    Use as ``async with Publisher(endpoint, client_id) as pub: await pub.publish(messages)``.
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        client_id: str,
        *,
        session_expiry_s: int = 3600,
        reconnect_delay_s: float = 1.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.published = 0
        self._closing = False
        self._connect_timeout_s = connect_timeout_s
        self._space = asyncio.Event()
        self._window = _DEFAULT_RECEIVE_MAXIMUM - 1
        self._store = _InflightStore(self._space.set)
        self._client = Client(
            client_id,
            clean_session=True,
            persistent_storage=self._store,
            session_expiry_interval=session_expiry_s,
        )
        self._client.set_config({"reconnect_delay": reconnect_delay_s})
        if endpoint.username is not None:
            self._client.set_auth_credentials(endpoint.username, endpoint.password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Client, flags: int, rc: int, properties: dict[str, Any]) -> None:
        receive_maximum = properties.get("receive_maximum") or [_DEFAULT_RECEIVE_MAXIMUM]
        # gmqtt can hold one fewer identifier than the Receive Maximum it was given.
        self._window = max(1, int(receive_maximum[0]) - 1)
        log.debug("%s connected, window %d", self.client_id, self._window)
        orphaned, self._store.orphaned = self._store.orphaned, []
        if orphaned:
            log.warning("%s: broker lost our session; resending %d", self.client_id, len(orphaned))
        for mid, package in orphaned:
            # Same packet and identifier (gmqtt still holds it as used) in the new session.
            self._store.push_message(mid, package)
            client._connection.send_package(package)
        self._space.set()

    def _on_disconnect(self, client: Client, packet: Any, exc: Exception | None = None) -> None:
        if not self._closing:
            log.warning("%s lost the broker; gmqtt reconnects", self.client_id)

    async def __aenter__(self) -> Publisher:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        except (OSError, TimeoutError) as exc:
            await self._abandon()
            raise PublishError(
                f"cannot reach the MQTT broker at {self.endpoint.host}:{self.endpoint.port}: {exc}"
            ) from exc
        except Exception as exc:  # gmqtt raises its own MQTTConnectError for refusals
            await self._abandon()
            raise PublishError(
                f"the MQTT broker refused {self.client_id}: {exc}", refused=True
            ) from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        await self._client.disconnect()

    async def _abandon(self) -> None:
        self._closing = True
        self._client.stop_reconnect()
        if self._client._connection is not None:  # gmqtt leaves a half-open connection behind
            await self._client.disconnect()

    @property
    def acknowledged(self) -> int:
        """Messages the broker has acknowledged (PUBACK)."""
        return self._store.acknowledged

    @property
    def inflight(self) -> int:
        """Messages sent and not yet acknowledged."""
        return self._store.inflight

    @property
    def capacity(self) -> int:
        """How many messages may be sent right now without waiting."""
        if not self._client.is_connected:
            return 0
        return max(0, self._window - self._store.inflight)

    def send(self, messages: Sequence[tuple[bytes, bytes]], start: int = 0) -> int:
        """Send ``messages[start:]`` (topic, payload) up to the current capacity, without
        yielding to the event loop; returns how many were sent."""
        count = min(self.capacity, len(messages) - start)
        publish = self._client.publish
        for topic, payload in messages[start : start + count]:
            publish(Message(topic, payload, qos=1))
        self.published += count
        return count

    async def publish(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Send every message, waiting for acknowledgements whenever the window is full."""
        sent = 0
        while sent < len(messages):
            n = self.send(messages, sent)
            sent += n
            if sent < len(messages) and n == 0:
                self._space.clear()
                await self._space.wait()
            elif n:
                await asyncio.sleep(0)

    async def wait_for_space(self, timeout_s: float) -> None:
        """Return once an acknowledgement or a reconnect may have opened the window, or after
        ``timeout_s``."""
        self._space.clear()
        if self.capacity:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._space.wait()
        except TimeoutError:
            pass

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every sent message is acknowledged; False if ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        while self._store.inflight:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._space.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.5)):
                    await self._space.wait()
            except TimeoutError:
                continue
        return True


async def drive_fleet(
    fleet: Fleet,
    publishers: Mapping[str, Publisher],
    topic_prefix: str,
    stop: asyncio.Event,
    *,
    duration_s: float | None = None,
    backlog_max: int = 100_000,
) -> int:
    """Tick the fleet on whole wall-clock seconds and publish what each vehicle sends over its
    publisher (``publishers[vehicle_id]``), until ``stop`` is set or ``duration_s`` passes;
    returns the number of readings generated.

    Ticking never waits for the broker: while it is unreachable, messages wait in a backlog
    per vehicle (at most ``backlog_max`` in all, oldest dropped with a warning) that drains
    once it is back.
    """
    topics = {v: topic_for(topic_prefix, v).encode() for v in fleet.vehicle_ids}
    backlogs: dict[str, deque[tuple[bytes, bytes]]] = {v: deque() for v in fleet.vehicle_ids}
    per_vehicle_max = max(1, backlog_max // max(1, len(backlogs)))
    next_s = float(int(time.time()) + 1)
    end_s = None if duration_s is None else time.time() + duration_s
    readings = dropped = 0
    while not stop.is_set() and (end_s is None or next_s <= end_s):
        try:
            async with asyncio.timeout(max(0.0, next_s - time.time())):
                await stop.wait()
            break
        except TimeoutError:
            pass
        for vehicle_id, payload in fleet.advance(datetime.fromtimestamp(next_s, UTC)):
            backlogs[vehicle_id].append((topics[vehicle_id], encode(payload)))
            readings += len(payload) if isinstance(payload, list) else 1
        for vehicle_id, backlog in backlogs.items():
            while len(backlog) > per_vehicle_max:
                backlog.popleft()
                dropped += 1
                if dropped == 1 or dropped % 1000 == 0:
                    log.warning("broker unreachable: %d messages dropped from the backlog", dropped)
            if backlog:
                for _ in range(publishers[vehicle_id].send(list(backlog))):
                    backlog.popleft()
        next_s += 1.0

    async def finish(vehicle_id: str) -> None:
        publisher, backlog = publishers[vehicle_id], backlogs[vehicle_id]
        try:
            async with asyncio.timeout(10.0):
                await publisher.publish(list(backlog))
        except TimeoutError:
            log.warning("broker unreachable at shutdown: %d messages not sent", len(backlog))
        if not await publisher.drain(timeout_s=10.0):
            log.warning("%d messages were not acknowledged before shutdown", publisher.inflight)

    await asyncio.gather(*(finish(v) for v in backlogs))
    return readings
