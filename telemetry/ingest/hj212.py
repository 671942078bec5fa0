"""HJ 212 packets in the ingest path (docs/adr/0010-hj212.md): MQTT payloads that begin with
``##`` and what the TCP listener (``ingest/hj212_tcp.py``) reads go through the same parser
(``telemetry/hj212``) and the same batch and commit as JSON.

Per batch the worker calls :meth:`Hj212Intake.lookup` (the registered analysers of the MNs the
batch holds, one query, only when it holds HJ 212), the decoder calls :meth:`decode` for each
HJ 212 message, and :meth:`store` writes the interval data and deviation counts inside the
batch's transaction. Replies (9014, 9013 + 1012) go out only after the commit, through
:meth:`acknowledge`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from telemetry.broker import repository
from telemetry.hj212.factors import interval_values, realtime_values
from telemetry.hj212.framing import BadFrame, split_packet
from telemetry.hj212.packet import (
    Packet,
    PacketError,
    Reassembler,
    check_crc,
    data_reply,
    local_time_us,
    notify_reply,
    parse_segment,
    peek_mn,
    set_time_request,
    time_zone,
)
from telemetry.hj212.station import Station, position_of
from telemetry.kinds.contract import Kind, Message, TopicError, parse_topic
from telemetry.kinds.walkthrough.record import WalkthroughReading
from telemetry.store import hj212 as hj212_store

__all__ = ["TCP_TOPIC", "Hj212Intake", "Hj212Result", "TcpToken"]

log = logging.getLogger(__name__)

#: Topic of what the TCP listener reads (``hj212/tcp/<peer>``); no MQTT topic starts so.
TCP_TOPIC = "hj212/tcp"
#: CN of real-time data, and of the interval data kept as such (minute, hour, day).
REALTIME = "2011"
INTERVALS = frozenset({"2051", "2061", "2031"})
TIME_CALIBRATION = "1013"
_REMEMBERED_REPLIES = 100_000


class TcpToken(NamedTuple):
    """The acknowledgement token of a TCP message: where its reply goes. Its first element
    is no MQTT connection generation, so the MQTT side leaves it alone."""

    origin: str
    send: Callable[[bytes], None]
    message: Message


@dataclass(slots=True)
class Hj212Result:
    """What one HJ 212 message became: a reading, or a dead letter's reason."""

    kind: Kind | None = None
    vehicle_id: str | None = None
    record: WalkthroughReading | None = None
    extra: dict[str, Any] | None = None
    reason: str | None = None
    detail: str = ""


@dataclass(slots=True)
class _IntervalRow:
    vehicle_id: str
    mn: str
    cn: str
    begin_us: int
    received_us: int
    factor: str
    values: tuple[float | None, float | None, float | None, float | None]
    flag: str | None
    unit: str | None


@dataclass(slots=True)
class _Batch:
    stations: dict[str, Station] = field(default_factory=dict)
    intervals: list[_IntervalRow] = field(default_factory=list)
    deviations: Counter[tuple[str, str, str]] = field(default_factory=Counter)


def is_hj212(msg: Message) -> bool:
    return msg.payload[:2] == b"##" or msg.topic.startswith(TCP_TOPIC + "/")


class Hj212Intake:
    def __init__(self, topic_prefix: str, *, now: Callable[[], datetime] = datetime.now) -> None:
        self._prefix = topic_prefix
        self._now = now
        self._batch = _Batch()
        self._reassembler = Reassembler()
        # id(message) → (message, replies): the identity check guards against a reused id.
        self._replies: dict[int, tuple[Message, list[bytes]]] = {}

    async def lookup(self, pool: asyncpg.Pool, messages: Sequence[Message]) -> None:
        """Start a batch: find the registered analysers of its HJ 212 messages' MNs."""
        self._batch = _Batch()
        mns = set()
        for msg in messages:
            if msg.payload[:2] == b"##":
                mn = peek_mn(msg.payload[6:])
                if mn:
                    mns.add(mn)
        if mns:
            async with pool.acquire() as conn:
                self._batch.stations = await repository.hj212_stations(conn, sorted(mns))

    async def store(self, conn: asyncpg.Connection) -> None:
        """Inside the batch's transaction: interval data (idempotent) and deviation counts."""
        batch = self._batch
        await hj212_store.insert_intervals(
            conn,
            [
                (
                    r.vehicle_id,
                    r.mn,
                    r.cn,
                    r.begin_us,
                    r.factor,
                    *r.values,
                    r.flag,
                    r.unit,
                    r.received_us,
                )
                for r in batch.intervals
            ],
        )
        await hj212_store.count_deviations(conn, batch.deviations)

    def acknowledge(self, tokens: Sequence[Any]) -> None:
        """After the commit: send the replies of the TCP messages among ``tokens``."""
        for token in tokens:
            if isinstance(token, TcpToken):
                entry = self._replies.pop(id(token.message), None)
                if entry is not None and entry[0] is token.message:
                    for reply in entry[1]:
                        token.send(reply)

    # -- one message -------------------------------------------------------------------------

    def decode(self, msg: Message) -> Hj212Result:
        """What ``msg`` (an HJ 212 payload) is; raises nothing on account of its content."""
        topic_vehicle: str | None = None
        topic_kind: Kind | None = None
        if not msg.topic.startswith(TCP_TOPIC + "/"):
            try:
                topic_kind, topic_vehicle = parse_topic(msg.topic, self._prefix)
            except TopicError as exc:
                return Hj212Result(reason=exc.reason, detail=str(exc))
        result = Hj212Result(topic_kind, topic_vehicle)
        try:
            self._decode(msg, result, topic_vehicle)
        except PacketError as exc:
            result.record, result.reason, result.detail = None, exc.reason, exc.detail
        return result

    def _decode(self, msg: Message, result: Hj212Result, topic_vehicle: str | None) -> None:
        if msg.payload[:2] != b"##":
            raise PacketError("hj212_garbage", "bytes outside any packet on the connection")
        frame = split_packet(msg.payload)
        if isinstance(frame, BadFrame):
            raise PacketError(frame.reason, frame.detail)
        mn = peek_mn(frame.segment)
        station = self._batch.stations.get(mn) if mn else None
        tolerate = station.tolerate if station is not None else frozenset()
        deviations = check_crc(frame.segment, frame.crc, tolerate)
        packet = parse_segment(frame.segment, tolerate)
        if station is None:
            raise PacketError("hj212_unknown_mn", f"MN {packet.mn!r} is not registered")
        result.kind, result.vehicle_id = Kind(station.kind), station.vehicle_id
        if topic_vehicle is not None and topic_vehicle != station.vehicle_id:
            raise PacketError(
                "hj212_mn_mismatch",
                f"MN {packet.mn!r} is registered to {station.vehicle_id!r}, not to the topic's "
                f"vehicle {topic_vehicle!r}",
            )
        if station.pw is not None and packet.pw != station.pw:
            raise PacketError("hj212_password", f"wrong PW for MN {packet.mn!r}")
        deviations += packet.deviations
        whole = self._reassembler.add(packet)
        if whole is not None:
            deviations += self._use(msg, whole, station, result)
        for d in dict.fromkeys(deviations):
            self._batch.deviations[(station.mn, d.value, station.vehicle_id)] += 1
        self._reply(msg, packet, whole, station)

    def _use(
        self, msg: Message, packet: Packet, station: Station, result: Hj212Result
    ) -> list[Any]:
        """Turn a whole packet into a reading or interval rows; the deviations it needed."""
        values = packet.values
        tz = time_zone(station.timezone)
        if packet.cn == REALTIME:
            if "DataTime" not in values:
                raise PacketError("hj212_field", "real-time data without DataTime")
            if Kind(station.kind) is not Kind.WALKTHROUGH:
                raise PacketError(
                    "hj212_unsupported", f"real-time data for a {station.kind} vehicle"
                )
            ts_us = local_time_us(values["DataTime"], tz)
            position = position_of(values, station)
            if position is None:
                raise PacketError(
                    "hj212_no_position",
                    "no position fields in the data and no registered position",
                )
            rt = realtime_values(
                values, units=station.units, tolerate=station.tolerate, skip=position.fields
            )
            result.record = WalkthroughReading(
                ts=ts_us // 1000,
                lat=position.lat,
                lon=position.lon,
                flag=rt.flag,
                units=None,  # converted by the analyser's factor units above
                calibration=None,  # HJ 212 says so with the flag (C)
                **rt.values,
            )
            result.extra = rt.extra or None
            return list(rt.deviations)
        if packet.cn in INTERVALS:
            if "DataTime" not in values:
                raise PacketError("hj212_field", "interval data without DataTime")
            begin_us = local_time_us(values["DataTime"], tz)
            rows, deviations = interval_values(
                values, units=station.units, tolerate=station.tolerate
            )
            self._batch.intervals += [
                _IntervalRow(
                    station.vehicle_id, station.mn, packet.cn, begin_us, msg.received_us,
                    r.factor, (r.min, r.avg, r.max, r.cou), r.flag, r.unit,
                )
                for r in rows
            ]  # fmt: skip
            return list(deviations)
        # Heartbeats, status and other commands: accepted, nothing to store.
        log.debug("HJ 212 CN %s from %s accepted without storing", packet.cn, station.mn)
        return []

    def _reply(self, msg: Message, packet: Packet, whole: Packet | None, station: Station) -> None:
        if not msg.topic.startswith(TCP_TOPIC + "/"):
            return  # over MQTT the PUBACK is the acknowledgement
        replies = []
        if packet.cn == TIME_CALIBRATION:
            now = self._now().astimezone(time_zone(station.timezone))
            replies = [notify_reply(packet), set_time_request(packet, now)]
        elif packet.reply_requested:
            cn = int(packet.cn)
            replies = [data_reply(packet) if 2000 <= cn < 3000 else notify_reply(packet)]
        if replies:
            if len(self._replies) > _REMEMBERED_REPLIES:
                self._replies.clear()
            self._replies[id(msg)] = (msg, replies)
