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

A micro-batch is decoded by groups: consecutive messages of one kind, on well-formed topics,
whose payloads open a JSON object or array, are decoded one C call each in a comprehension,
their duplicate-key proof made once for the group (per payload, the count of ``:`` is at least
the bound, so the group's totals are equal only if every payload's are), and their rows
appended as columns. Anything in a group that the fast way cannot take (a payload that does
not decode, a key twice, an array too long) sends the group's messages one by one through the
path above, which says why; so the result is the same, only the cost differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import msgspec

from telemetry.ingest.hj212 import TCP_TOPIC, Hj212Result, is_hj212
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


def _typed_key_bound(typed: Any) -> int:
    """A lower bound of the keys (plus colons inside strings) that the strictly decoded
    ``typed`` was sent with: the colons of its re-encoding, which omits defaults. A nested
    struct's None field (an emergency gas without sensor) is encoded ":null" although it may
    not have been sent: not counted."""
    encoded = _encoder.encode(typed)
    return encoded.count(b":") - encoded.count(b":null")


def _typed_without_duplicates(payload: bytes, typed: Any) -> bool:
    """True if the strictly decoded ``typed`` provably had no duplicate key (see module doc).
    Fields left at their default and nulls are not counted, so a payload that sends them
    is not proven here and takes the generic path, which proves it."""
    return b"\\" not in payload and payload.count(b":") == _typed_key_bound(typed)


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
    _OPENERS = (b"{", b"[")

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
        # topic → (kind, vehicle id) for well-formed topics of ingested kinds; None otherwise.
        self._topics: dict[str, tuple[Kind, str] | None] = {}
        self._shapes: dict[tuple[Kind, tuple[str, ...]], tuple[str, ...]] = {}
        self._lists = {k: list[t] for k, t in record_types.items()}  # type: ignore[valid-type]
        self.rows: dict[Kind, KindRows] = {}
        self.dead: list[DeadLetter] = []

    def decode(self, messages: Sequence[Message]) -> Decoded:
        """Records per kind and dead letters; raises nothing on account of a message."""
        self.rows, self.dead = {}, []
        if len(self.with_extras) > self._MAX_REMEMBERED:
            self.with_extras.clear()
        if len(self._topics) > self._MAX_REMEMBERED:
            self._topics.clear()
        # The usual micro-batch, checked in bulk (C-level maps): every topic known and of one
        # kind, every payload a JSON object or array within the size limit: one group.
        parsed = list(map(self._topics.get, [m.topic for m in messages]))
        payloads = [m.payload for m in messages]
        if (
            parsed
            and None not in parsed
            and len({p[0] for p in parsed}) == 1  # type: ignore[index]
            and max(map(len, payloads)) <= self.max_payload_bytes
            and all(map(bytes.startswith, payloads, repeat(self._OPENERS)))
        ):
            self._decode_run(messages, {parsed[0][0]: list(range(len(messages)))})  # type: ignore[index]
        else:
            self._decode_mixed(messages)
        return Decoded(rows={k: v for k, v in self.rows.items() if len(v)}, dead=self.dead)

    def _decode_mixed(self, messages: Sequence[Message]) -> None:
        """Consecutive messages the groups can take, grouped by kind (message order kept per
        kind); each other message one by one where it stands."""
        topics = self._topics
        openers = self._OPENERS
        limit = self.max_payload_bytes
        run: dict[Kind, list[int]] = {}
        for m_index, msg in enumerate(messages):
            topic = msg.topic
            known = topics[topic] if topic in topics else self._topic(topic)
            payload = msg.payload
            if known is not None and payload[:1] in openers and len(payload) <= limit:
                run.setdefault(known[0], []).append(m_index)
                continue
            if run:
                self._decode_run(messages, run)
                run = {}
            self._decode_guarded(m_index, msg)
        if run:
            self._decode_run(messages, run)

    def _topic(self, topic: str) -> tuple[Kind, str] | None:
        """The topic's (kind, vehicle id), remembered; None when the one-by-one path must
        look at its messages (a topic outside the contract, a kind not ingested, HJ 212)."""
        try:
            kind, vehicle_id = parse_topic(topic, self.topic_prefix)
        except TopicError:
            parsed = None
        else:
            parsed = (kind, vehicle_id) if kind in self.record_types else None
        if self.hj212 is not None and topic.startswith(TCP_TOPIC + "/"):
            parsed = None
        self._topics[topic] = parsed
        return parsed

    def _decode_run(self, messages: Sequence[Message], run: dict[Kind, list[int]]) -> None:
        for kind, group in run.items():
            try:
                done = self._decode_group(kind, group, messages)
            except Exception:
                done = False  # the one-by-one path finds the message and says why
            if not done:
                for m_index in group:
                    self._decode_guarded(m_index, messages[m_index])

    def _decode_guarded(self, m_index: int, msg: Message) -> None:
        mark = len(self.dead)
        try:
            self._decode_one(m_index, msg)
        except Exception as exc:
            self._unprocessable(m_index, msg, exc, mark)

    def _decode_group(self, kind: Kind, group: list[int], messages: Sequence[Message]) -> bool:
        """Decode the messages at ``group`` (one kind, well-formed topics) together; False,
        having added nothing, when any of them needs the one-by-one path."""
        msgs = [messages[i] for i in group]
        payloads = [m.payload for m in msgs]
        joined = b"".join(payloads)
        colons = joined.count(b":")
        with_extras = self.with_extras
        if b"\\" not in joined and not any(m.topic in with_extras for m in msgs):
            strict = self.strict[kind].decode
            try:
                typed = [strict(p) for p in payloads]
            except _UNDECODABLE:
                typed = None  # an extra field, most likely: the generic way below
            if typed is not None and colons != _typed_key_bound(typed):
                typed = None  # a default or null sent: the generic proof below
            if typed is not None:
                if any(type(t) is list for t in typed):
                    if not all(0 < len(t) <= self.max_items for t in typed if type(t) is list):
                        return False
                    for m_index, msg, t in zip(group, msgs, typed, strict=True):
                        self._accept(kind, self._topics[msg.topic][1], m_index, msg, t)  # type: ignore[index]
                    return True
                self._append(kind, group, msgs, typed, [None] * len(typed), typed)
                return True
        generic = _json.decode
        try:
            raws = [generic(p) for p in payloads]
        except _UNDECODABLE:
            return False
        if not all(type(r) is dict for r in raws) or colons != sum(map(len, raws)):
            return False  # an array, or a key that may occur twice
        try:
            records = msgspec.convert(raws, self._lists[kind])
        except msgspec.ValidationError:
            return False
        unknown = self._unknown_keys(kind, raws)
        extras = [{k: r[k] for k in u} if u else None for r, u in zip(raws, unknown, strict=True)]
        with_extras.update(m.topic for m, u in zip(msgs, unknown, strict=True) if u)
        self._append(kind, group, msgs, records, extras, raws)
        return True

    def _unknown_keys(self, kind: Kind, raws: list[dict[str, Any]]) -> list[tuple[str, ...]]:
        """Each object's keys that are no field of the kind's record, looked up by the
        object's key sequence (a vehicle sends the same few shapes)."""
        shapes = self._shapes
        if len(shapes) > self._MAX_REMEMBERED:
            shapes.clear()
        known = self.known[kind]
        out = []
        for shape in map(tuple, raws):
            key = (kind, shape)
            unknown = shapes.get(key)
            if unknown is None:
                unknown = shapes[key] = tuple(k for k in shape if k not in known)
            out.append(unknown)
        return out

    def _append(
        self,
        kind: Kind,
        group: list[int],
        msgs: list[Message],
        records: list[Any],
        extras: list[dict[str, Any] | None],
        raw_items: list[Any],
    ) -> None:
        """One record per message, as columns."""
        rows = self.rows.get(kind)
        if rows is None:
            rows = self.rows[kind] = KindRows()
        topics = self._topics
        rows.records.extend(records)
        rows.extras.extend(extras)
        rows.vehicle_id.extend([topics[m.topic][1] for m in msgs])  # type: ignore[index]
        rows.received_us.extend([m.received_us for m in msgs])
        rows.message_of.extend(group)
        rows.item_of.extend([-1] * len(group))
        rows.raw_items.extend(raw_items)

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
