"""Decode MQTT messages into typed records per vehicle kind, or into dead letters.

The hot path decodes with msgspec (several times faster than pydantic here); pydantic stays
for the API and settings. Each kind names its record type (a ``msgspec.Struct``); unknown
fields of a record are kept, not dropped.

Nothing a message holds escapes as an exception: whatever cannot be decoded is a dead letter
with its reason, and an unexpected exception while decoding one message is that message's
dead letter (``unprocessable``, with the exception's class), never the batch's.

Duplicate keys in a JSON object are a ``schema`` error (msgspec, like most decoders, would
keep the last value). msgspec cannot report them, so they are ruled out by counting: every
``:`` in a JSON text ends a key or stands inside a string, so if the payload's count of
``:`` equals a lower bound of (distinct keys + colons inside strings) of what was decoded,
no key occurs twice. The bound is ``len(dict)`` for a flat object (one ``bytes.count`` and a
``len`` per message), else the colons of the decoded value re-encoded (only without
backslash escapes, which could hide a colon); a payload neither proves is parsed once more
with a duplicate-detecting parser.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from telemetry.ingest.hj212 import Hj212Result, is_hj212
from telemetry.kinds.contract import Kind, KindRows, Message, TopicError, parse_topic
from telemetry.store.deadletter import DeadLetter

__all__ = ["Decoded", "Decoder"]


def _strict_decoder(record_type: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
    # omit_defaults: re-encoded, a record shows only fields that must have been sent (a
    # lower bound of its keys, for the duplicate-key proof).
    strict = type(
        record_type.__name__, (record_type,), {}, forbid_unknown_fields=True, omit_defaults=True
    )
    return msgspec.json.Decoder(strict | list[strict])  # type: ignore[valid-type]


_json = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
#: What msgspec raises on input it refuses, besides its own errors: invalid UTF-8 inside a
#: string escapes as UnicodeDecodeError, deep nesting as RecursionError.
_UNDECODABLE = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


def _typed_without_duplicates(payload: bytes, typed: Any) -> bool:
    """True if the strictly decoded ``typed`` provably had no duplicate key (see module doc).
    Fields left at their default and nulls are not counted, so a payload that sends them
    is not proven here and takes the generic path, which proves it."""
    if b"\\" in payload:
        return False
    encoded = _encoder.encode(typed)
    # A nested struct's None field (an emergency gas without sensor) is encoded ":null"
    # although it may not have been sent: not counted.
    return payload.count(b":") == encoded.count(b":") - encoded.count(b":null")


def _raw_without_duplicates(payload: bytes, raw: Any) -> bool:
    """True if the generically decoded ``raw`` provably had no duplicate key."""
    colons = payload.count(b":")
    # Top-level keys only: a lower bound that is exact for the usual flat record.
    flat = len(raw) if type(raw) is dict else sum(len(i) for i in raw if type(i) is dict)
    if colons == flat:
        return True
    return b"\\" not in payload and colons == _encoder.encode(raw).count(b":")


class _Pairs(dict[str, Any]):
    """A JSON object as parsed by :func:`_duplicate_keys`; ``duplicate`` names a repeated
    key."""

    duplicate: str | None = None


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    obj = _Pairs(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                obj.duplicate = key
                break
            seen.add(key)
    return obj


def _first_duplicate(value: Any) -> str | None:
    if isinstance(value, _Pairs):
        if value.duplicate is not None:
            return value.duplicate
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _first_duplicate(item)
            if found is not None:
                return found
    return None


def _duplicate_keys(payload: bytes, indexed: bool) -> dict[int | None, str]:
    """The repeated key of the payload (``None``) or of each array element (its index) that
    has one, parsed exactly; the slow path, for payloads the counting cannot clear."""
    parsed = json.loads(payload, object_pairs_hook=_pairs)
    if not indexed:
        found = _first_duplicate(parsed)
        return {} if found is None else {None: found}
    out: dict[int | None, str] = {}
    for i, item in enumerate(parsed):
        found = _first_duplicate(item)
        if found is not None:
            out[i] = found
    return out


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
        hj212: Callable[[Message], Hj212Result] | None = None,
    ) -> None:
        self.hj212 = hj212  # HJ 212 packets (payloads that begin with ##, the TCP listener's)
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
        """Records per kind and dead letters; raises nothing on account of a message."""
        self.rows, self.dead = {}, []
        if len(self.with_extras) > self._MAX_REMEMBERED:
            self.with_extras.clear()
        dead = self.dead
        for m_index, msg in enumerate(messages):
            mark = len(dead)
            try:
                self._decode_one(m_index, msg)
            except Exception as exc:
                self._unprocessable(m_index, msg, exc, mark)
        return Decoded(rows={k: v for k, v in self.rows.items() if len(v)}, dead=self.dead)

    def _unprocessable(self, m_index: int, msg: Message, exc: Exception, mark: int) -> None:
        """Undo what a message whose decoding raised had added, and dead-letter it whole."""
        for rows in self.rows.values():
            if rows.message_of and rows.message_of[-1] == m_index:
                cut = len(rows.message_of)
                while cut and rows.message_of[cut - 1] == m_index:
                    cut -= 1
                rows.truncate(cut)
        del self.dead[mark:]
        try:
            kind: Kind | None
            kind, vehicle_id = parse_topic(msg.topic, self.topic_prefix)
        except TopicError:
            kind, vehicle_id = None, None
        detail = f"{type(exc).__name__}: {exc}"
        self._reject(msg, kind, vehicle_id, "unprocessable", detail)

    def _decode_one(self, m_index: int, msg: Message) -> None:
        if self.hj212 is not None and is_hj212(msg):
            self._hj212_one(m_index, msg, self.hj212(msg))
            return
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
            try:
                typed = self.strict[kind].decode(msg.payload)
            except _UNDECODABLE:
                typed = None  # the generic path says why
        if (
            typed is not None
            and (not isinstance(typed, list) or 0 < len(typed) <= self.max_items)
            and _typed_without_duplicates(msg.payload, typed)
        ):
            self._accept(kind, vehicle_id, m_index, msg, typed)
            return
        try:
            raw = _json.decode(msg.payload)
        except msgspec.ValidationError as exc:
            # Valid JSON syntax, but a number beyond a double's range (1e400). Caught first:
            # ValidationError is a DecodeError.
            reject("out_of_range", f"a number is too large to represent: {exc}")
            return
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            reject("malformed_json", f"payload is not valid UTF-8 JSON: {exc}")
            return
        except RecursionError:
            reject("schema", "payload is nested deeper than any record")
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

        duplicates: dict[int | None, str] = {}
        # The usual flat object is cleared inline (no call); anything else by the helper.
        if (indexed or msg.payload.count(b":") != len(raw)) and not _raw_without_duplicates(
            msg.payload, raw
        ):
            duplicates = _duplicate_keys(msg.payload, indexed)
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
            if duplicates and item_no in duplicates:
                key = duplicates[item_no]
                reject("schema", f"duplicate key {key!r} in a JSON object", item_no, item)
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

    def _hj212_one(self, m_index: int, msg: Message, got: Hj212Result) -> None:
        if got.record is None or got.kind is None or got.vehicle_id is None:
            if got.reason is not None:
                self._reject(msg, got.kind, got.vehicle_id, got.reason, got.detail)
            return  # a part of a split packet, a heartbeat: nothing to store
        if got.kind not in self.record_types:
            detail = f"kind {got.kind.value!r} is not ingested by this version"
            self._reject(msg, got.kind, got.vehicle_id, "unsupported_kind", detail)
            return
        self._accept(got.kind, got.vehicle_id, m_index, msg, got.record)
        self.rows[got.kind].extras[-1] = got.extra

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
