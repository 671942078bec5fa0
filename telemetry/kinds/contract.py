"""What a vehicle kind is, and what it plugs into the ingest worker.

The MQTT topic contract is ``{prefix}/{kind}/{vehicle_id}``. The worker owns the MQTT intake,
the micro-batch, the transaction, dead letters and alert episodes; a kind supplies the rest
through :class:`KindPipeline`, generic over its column batch ``B`` and the state ``S`` it
hands from a commit to ``committed``:

1. ``record`` — the msgspec Struct one JSON record decodes into (unknown fields are kept by
   the decoder and handed over as ``extras``);
2. ``to_batch`` — decoded rows → a column batch (numpy arrays, one element per record);
3. ``check`` — vectorized plausibility checks → (ok, reason, detail) per row;
4. ``commit`` — inside the batch's transaction: store idempotently, run detection on the rows
   that were new, return an :class:`Outcome` with the exceedances;
5. ``committed`` — after the commit: advance in-memory state (never before: a rolled-back
   batch is retried and must not count twice);
6. ``idle`` — called about once a second inside a transaction of its own: judge what is due
   without new input (a drive pass whose vehicle went quiet); its outcome is ``committed``
   too;
7. ``refresh`` — reload reference data (road segments, thresholds, incidents) periodically.

A kind whose rules need each vehicle's readings in measurement order (the walk-through drive
passes and sensor faults) also implements :class:`OrderedDetector`: its ``commit`` only stores,
and the worker's detector calls ``detect`` with a :class:`DetectWindow` of the vehicle
partitions it holds, reading committed rows back in (vehicle, time) order, whichever worker
stored them (docs/adr/0011). Its outcome goes to ``committed`` like a batch's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import asyncpg
import msgspec

from telemetry.alerts.exceedance import Exceedance
from telemetry.kinds.checks import CheckResult, Limits
from telemetry.store.deadletter import DeadLetter

__all__ = [
    "CheckResult",
    "DetectWindow",
    "Kind",
    "KindPipeline",
    "KindRows",
    "Message",
    "OrderedDetector",
    "Outcome",
    "TopicError",
    "parse_topic",
]


class Kind(StrEnum):
    WALKTHROUGH = "walkthrough"
    REMOTE_SENSING = "remote_sensing"
    EMERGENCY = "emergency"


class TopicError(ValueError):
    """A topic outside the contract; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_KINDS = {k.value: k for k in Kind}


def parse_topic(topic: str, prefix: str = "telemetry") -> tuple[Kind, str]:
    """Split a topic into (kind, vehicle_id) or raise :class:`TopicError`."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix or not parts[2]:
        raise TopicError("bad_topic", f"topic {topic!r} is not {prefix}/{{kind}}/{{vehicle_id}}")
    kind = _KINDS.get(parts[1])
    if kind is None:
        raise TopicError("unknown_kind", f"unknown vehicle kind {parts[1]!r} in topic {topic!r}")
    if len(parts[2]) > 64:
        raise TopicError("bad_topic", "vehicle id longer than 64 characters")
    return kind, parts[2]


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as received."""

    topic: str
    payload: bytes
    received_us: int


_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class KindRows:
    """The records of one kind decoded from a micro-batch, with where each came from."""

    records: list[Any] = field(default_factory=list)
    vehicle_id: list[str] = field(default_factory=list)
    received_us: list[int] = field(default_factory=list)
    extras: list[dict[str, Any] | None] = field(default_factory=list)
    message_of: list[int] = field(default_factory=list)
    item_of: list[int] = field(default_factory=list)  # -1: the whole message was one record
    raw_items: list[Any] = field(default_factory=list)  # the element as sent (dict or record)

    def __len__(self) -> int:
        return len(self.records)

    def select(self, rows: Sequence[int]) -> KindRows:
        """The rows at the positions ``rows``, in that order (the failure path's tool for
        taking a batch apart; not for the hot path)."""
        return KindRows(*([column[i] for i in rows] for column in self._columns()))

    def truncate(self, n: int) -> None:
        """Drop every row from position ``n`` on (a message whose decoding failed half-way)."""
        for column in self._columns():
            del column[n:]

    def _columns(self) -> tuple[list[Any], ...]:
        return (
            self.records,
            self.vehicle_id,
            self.received_us,
            self.extras,
            self.message_of,
            self.item_of,
            self.raw_items,
        )

    def dead_letter(
        self, row: int, messages: Sequence[Message], kind: Kind, reason: str, detail: str
    ) -> DeadLetter:
        """A dead letter for one decoded record that a later stage rejected. An array element
        is stored on its own, not with the whole array."""
        msg = messages[self.message_of[row]]
        item = self.item_of[row]
        payload = msg.payload if item < 0 else _encoder.encode(self.raw_items[row])
        return DeadLetter(
            msg.received_us,
            msg.topic,
            kind.value,
            self.vehicle_id[row],
            reason,
            detail,
            None if item < 0 else item,
            payload,
        )


S = TypeVar("S")
B = TypeVar("B")
B_contra = TypeVar("B_contra", contravariant=True)


@dataclass(slots=True)
class Outcome(Generic[S]):
    """What one kind's part of a batch did inside the transaction."""

    accepted: int
    stored: int
    exceedances: list[Exceedance] = field(default_factory=list)
    state: S | None = None  # handed back to ``committed``


class KindPipeline(Protocol[B, S]):
    kind: Kind
    record: type[msgspec.Struct]

    def to_batch(self, rows: KindRows) -> B: ...

    def check(self, batch: B, *, now_us: int, limits: Limits) -> CheckResult: ...

    async def commit(self, conn: asyncpg.Connection, batch: B, *, now_us: int) -> Outcome[S]: ...

    def committed(self, outcome: Outcome[S]) -> None: ...

    async def idle(self, conn: asyncpg.Connection, *, now_us: int) -> Outcome[S]: ...

    async def refresh(self, pool: asyncpg.Pool) -> None: ...


@dataclass(frozen=True, slots=True)
class DetectWindow:
    """What one detector tick may judge, per vehicle partition it holds (aligned lists):
    rows that arrived after ``since_us`` and no later than ``horizon_us`` are new to it, and
    every row that arrived no later than ``horizon_us`` is committed. Times are epoch µs of
    arrival. ``final``: no other worker is live and this one is stopping, so what is still in
    progress is judged now."""

    partitions: list[int]
    since_us: list[int]
    horizon_us: list[int]
    partition_count: int
    final: bool = False


@runtime_checkable
class OrderedDetector(Protocol):
    """A kind that judges committed rows in measurement order (see the module docstring)."""

    async def detect(self, conn: asyncpg.Connection, window: DetectWindow) -> Outcome[Any]: ...
