"""Property-based: decoding a micro-batch in groups gives exactly what decoding each of its
messages alone gives: the same records, extra fields, array positions and dead letters, in
message order per kind. Groups are the fast way; one message at a time is the reference."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.ingest.decode import Decoded, Decoder
from telemetry.kinds.contract import Kind, Message
from telemetry.kinds.emergency.pipeline import EmergencyPipeline
from telemetry.kinds.remote_sensing.pipeline import RemoteSensingPipeline
from telemetry.kinds.walkthrough.pipeline import WalkthroughPipeline

RECORDS = {
    Kind.WALKTHROUGH: WalkthroughPipeline.record,
    Kind.REMOTE_SENSING: RemoteSensingPipeline.record,
    Kind.EMERGENCY: EmergencyPipeline.record,
}
TS = 1_795_305_600_000
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_encoder = msgspec.json.Encoder()


def _reading(i: int) -> dict[str, Any]:
    return {"ts": TS + i * 1000, "lat": 39.99, "lon": 116.31, "pm25": 30.0 + i, "flag": "N"}


# Payloads of every shape the fast way must hand back: plain and with extra fields, arrays,
# nulls and defaults sent, escapes, duplicate keys, fragments that are valid JSON only when
# joined with their neighbours, other kinds' records, oversized and non-JSON bytes.
PAYLOADS = st.sampled_from(
    [
        json.dumps(_reading(1)),
        json.dumps(_reading(2)),
        json.dumps({**_reading(3), "sent_at_ms": 5}),
        json.dumps({**_reading(4), "driver": "王", "note": "a:b"}),
        json.dumps({"ts": TS, "lat": 39.99, "lon": 116.31}),
        json.dumps({"ts": TS, "lat": 39.99, "lon": 116.31, "pm10": None, "co": 0.5}),
        json.dumps({"ts": TS, "lat": 39.99, "lon": 116.31, "note": "a\\u003ab"}),
        json.dumps([_reading(5), _reading(6)]),
        json.dumps([_reading(7), {**_reading(8), "x": 1}]),
        json.dumps([]),
        json.dumps([_reading(i) for i in range(12)]),  # beyond the limit of 10
        json.dumps(_reading(9))[:-1] + ', "pm25": 1}',  # a key twice
        f'{{"ts": {TS}, "lat": 39.99',  # fragments
        '"lon": 116.31}',
        f'{{"ts": {TS}, "lat": 1, "lon": 2}},{{"ts": {TS + 1}, "lat": 1, "lon": 2}}',
        json.dumps({**_reading(10), "lat": "north"}),  # wrong type
        json.dumps({**_reading(11), "flag": "bad"}),
        '{"ts": "2026-11-22T08:00:00+08:00", "lat": 39.99, "lon": 116.31}',
        json.dumps({"plate": "京A12345"}),
        "not json",
        "{" + " " * 5000 + "}",
        '{"ts": 1e400, "lat": 1, "lon": 2}',
    ]
)
TOPICS = st.sampled_from(
    [
        "telemetry/walkthrough/v1",
        "telemetry/walkthrough/v2",
        "telemetry/remote_sensing/rs1",
        "telemetry/emergency/e1",
        "telemetry/unknown/x",
        "elsewhere/walkthrough/v1",
    ]
)


def _decoder() -> Decoder:
    return Decoder(
        RECORDS, topic_prefix="telemetry", max_payload_bytes=4096, max_readings_per_message=10
    )


def _fields(record: Any) -> dict[str, Any]:
    """A record's values: one path may hand a subclass of the record type that encodes more
    tersely, with the same values."""
    return {f: getattr(record, f) for f in record.__struct_fields__}


def _rows(decoded: Decoded, m_index: int | None = None) -> dict[Kind, list[Any]]:
    """Per kind, each row as comparable values; ``m_index`` replaces the message index. The
    element as sent (kept for dead letters) must stand for the same record."""
    out: dict[Kind, list[Any]] = {}
    for kind, rows in decoded.rows.items():
        for i in range(len(rows)):
            sent = msgspec.json.decode(_encoder.encode(rows.raw_items[i]))
            known = {k: v for k, v in sent.items() if k in RECORDS[kind].__struct_fields__}
            assert _fields(msgspec.convert(known, RECORDS[kind])) == _fields(rows.records[i])
        out[kind] = [
            (
                rows.message_of[i] if m_index is None else m_index,
                rows.item_of[i],
                rows.vehicle_id[i],
                rows.received_us[i],
                _fields(rows.records[i]),
                rows.extras[i],
            )
            for i in range(len(rows))
        ]
    return out


def _dead(decoded: Decoded) -> list[Any]:
    return [
        (d.received_us, d.topic, d.kind, d.vehicle_id, d.reason, d.detail, d.item_index, d.payload)
        for d in decoded.dead
    ]


@FAST
@given(st.lists(st.tuples(TOPICS, PAYLOADS), min_size=1, max_size=12), st.booleans())
def test_a_batch_decodes_as_its_messages_one_by_one(
    messages: list[tuple[str, str]], warm: bool
) -> None:
    batch = [Message(t, p.encode(), 1000 + i) for i, (t, p) in enumerate(messages)]
    decoder = _decoder()
    if warm:  # a decoder that has already seen these vehicles send extra fields
        decoder.decode(batch)
    together = decoder.decode(batch)
    expected_rows: dict[Kind, list[Any]] = {}
    expected_dead: list[Any] = []
    for i, message in enumerate(batch):
        alone = _decoder().decode([message])
        for kind, rows in _rows(alone, i).items():
            expected_rows.setdefault(kind, []).extend(rows)
        expected_dead.extend(_dead(alone))
    assert _rows(together) == expected_rows
    assert sorted(_dead(together), key=repr) == sorted(expected_dead, key=repr)
