"""Decode MQTT messages into typed records per vehicle kind, or into dead letters.

The hot path decodes with msgspec (several times faster than pydantic here); pydantic stays
for the API and settings. Each kind names its record type (a ``msgspec.Struct``); unknown
fields of a record are kept, not dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from telemetry.kinds.contract import Kind, KindRows, Message, TopicError, parse_topic
from telemetry.store.deadletter import DeadLetter

__all__ = ["Decoded", "Decoder"]


def _strict_decoder(record_type: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
    strict = type(record_type.__name__, (record_type,), {}, forbid_unknown_fields=True)
    return msgspec.json.Decoder(strict | list[strict])  # type: ignore[valid-type]


_json = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Decoded:
    rows: dict[Kind, KindRows]
    dead: list[DeadLetter]


class Decoder:
    """Decodes micro-batches; long-lived, so that it learns which vehicles send extra fields.

    Fast path: a payload with no unknown field decodes straight into records, in C. Anything
    else (extra fields, a bad element) is decoded generically and converted element by
    element. A vehicle seen sending extra fields goes straight to the second path next time.
    """

    _MAX_REMEMBERED = 100_000

    def __init__(
        self,
        record_types: Mapping[Kind, type[msgspec.Struct]],
        *,
        topic_prefix: str,
        max_payload_bytes: int,
        max_readings_per_message: int,
    ) -> None:
        self.record_types = record_types
        self.known = {k: frozenset(t.__struct_fields__) for k, t in record_types.items()}
        self.strict = {k: _strict_decoder(t) for k, t in record_types.items()}
        self.topic_prefix = topic_prefix
        self.max_payload_bytes = max_payload_bytes
        self.max_items = max_readings_per_message
        self.with_extras: set[str] = set()
        self.rows: dict[Kind, KindRows] = {}
        self.dead: list[DeadLetter] = []

    def decode(self, messages: Sequence[Message]) -> Decoded:
        self.rows, self.dead = {}, []
        if len(self.with_extras) > self._MAX_REMEMBERED:
            self.with_extras.clear()
        for m_index, msg in enumerate(messages):
            self._decode_one(m_index, msg)
        return Decoded(rows={k: v for k, v in self.rows.items() if len(v)}, dead=self.dead)

    def _decode_one(self, m_index: int, msg: Message) -> None:
        try:
            kind, vehicle_id = parse_topic(msg.topic, self.topic_prefix)
        except TopicError as exc:
            self._reject(msg, None, None, exc.reason, str(exc))
            return

        def reject(reason: str, detail: str, item: int | None = None, element: Any = None) -> None:
            self._reject(msg, kind, vehicle_id, reason, detail, item, element)

        if len(msg.payload) > self.max_payload_bytes:
            size, limit = len(msg.payload), self.max_payload_bytes
            reject("oversized", f"payload of {size} bytes exceeds the {limit}-byte limit")
            return
        record_type = self.record_types.get(kind)
        if record_type is None:
            reject("unsupported_kind", f"kind {kind.value!r} is not ingested by this version")
            return
        typed = None
        if msg.topic not in self.with_extras:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                typed = self.strict[kind].decode(msg.payload)
        if typed is not None and (not isinstance(typed, list) or 0 < len(typed) <= self.max_items):
            self._accept(kind, vehicle_id, m_index, msg, typed)
            return
        try:
            raw = _json.decode(msg.payload)
        except msgspec.DecodeError as exc:
            reject("malformed_json", f"payload is not valid UTF-8 JSON: {exc}")
            return

        if isinstance(raw, dict):
            items: list[Any] = [raw]
            indexed = False
        elif isinstance(raw, list):
            items, indexed = raw, True
            if not items:
                reject("schema", "payload is an empty array")
                return
            if len(items) > self.max_items:
                n, limit = len(items), self.max_items
                reject("too_many_readings", f"array of {n} records exceeds the {limit} limit")
                return
        else:
            name = type(raw).__name__
            reject("schema", f"payload must be a record object or an array of them, not {name}")
            return

        rows = self.rows.get(kind)
        if rows is None:
            rows = self.rows[kind] = KindRows()
        known = self.known[kind]
        for i_index, item in enumerate(items):
            item_no = i_index if indexed else None
            if not isinstance(item, dict):
                reject(
                    "schema", f"record must be an object, not {type(item).__name__}", item_no, item
                )
                continue
            try:
                record = msgspec.convert(item, record_type)
            except msgspec.ValidationError as exc:
                reject("schema", str(exc), item_no, item)
                continue
            unknown = item.keys() - known
            if unknown:
                self.with_extras.add(msg.topic)
            rows.records.append(record)
            rows.extras.append({k: item[k] for k in unknown} if unknown else None)
            rows.vehicle_id.append(vehicle_id)
            rows.received_us.append(msg.received_us)
            rows.message_of.append(m_index)
            rows.item_of.append(-1 if item_no is None else item_no)
            rows.raw_items.append(item)

    def _accept(self, kind: Kind, vehicle_id: str, m_index: int, msg: Message, typed: Any) -> None:
        rows = self.rows.get(kind)
        if rows is None:
            rows = self.rows[kind] = KindRows()
        if isinstance(typed, list):
            records, items = typed, range(len(typed))
        else:
            records, items = [typed], range(-1, 0)
        n = len(records)
        rows.records.extend(records)
        rows.extras.extend([None] * n)
        rows.vehicle_id.extend([vehicle_id] * n)
        rows.received_us.extend([msg.received_us] * n)
        rows.message_of.extend([m_index] * n)
        rows.item_of.extend(items)
        rows.raw_items.extend(records)

    def _reject(
        self,
        msg: Message,
        kind: Kind | None,
        vehicle_id: str | None,
        reason: str,
        detail: str,
        item: int | None = None,
        element: Any = None,
    ) -> None:
        # An array element is dead-lettered on its own, not with the whole array.
        payload = msg.payload if item is None else _encoder.encode(element)
        kind_name = None if kind is None else kind.value
        self.dead.append(
            DeadLetter(
                msg.received_us, msg.topic, kind_name, vehicle_id, reason, detail, item, payload
            )
        )
