"""Decoding and validating walk-through messages: every bad input gets a reason."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from telemetry.ingest.decode import Decoder
from telemetry.kinds.checks import Limits
from telemetry.kinds.contract import Kind, Message
from telemetry.kinds.walkthrough.checks import check_walkthrough
from telemetry.kinds.walkthrough.record import WalkthroughReading, walkthrough_batch

NOW_US = 1_795_305_600_000_000  # 2026-11-22T00:00:00Z
NOW_MS = NOW_US // 1000
LIMITS = Limits(max_future_skew_s=300, max_age_s=7 * 86400)


def _decode(*messages: tuple[str, bytes | str | object]):
    msgs = []
    for topic, payload in messages:
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
        msgs.append(Message(topic, payload, NOW_US))
    return _Result(
        Decoder(
            {Kind.WALKTHROUGH: WalkthroughReading},
            topic_prefix="telemetry",
            max_payload_bytes=4096,
            max_readings_per_message=10,
        ).decode(msgs)
    )


class _Result:
    """The decoded walk-through rows as a batch, with where each row came from."""

    def __init__(self, decoded) -> None:
        rows = decoded.rows.get(Kind.WALKTHROUGH)
        self.rows = rows
        self.dead = decoded.dead
        self.batch = walkthrough_batch(rows) if rows else None
        self.message_of = np.array(rows.message_of if rows else [], dtype=int)
        self.item_of = np.array(rows.item_of if rows else [], dtype=int)


def _reading(**overrides: object) -> dict[str, object]:
    reading: dict[str, object] = {"ts": NOW_MS, "lat": 39.99, "lon": 116.31, "pm25": 42.0}
    reading.update(overrides)
    return reading


def test_single_reading_decodes_with_units_and_defaults() -> None:
    d = _decode(("telemetry/walkthrough/car-1", _reading(co=0.7, speed_kmh=31)))
    assert d.dead == []
    b = d.batch
    assert len(b) == 1
    assert b.vehicle_id[0] == "car-1"
    assert b.ts_us[0] == NOW_US
    assert b.pm25[0] == 42.0 and b.co[0] == 0.7 and b.speed_kmh[0] == 31.0
    assert np.isnan(b.no2[0])
    assert b.flag[0] == "N"
    assert b.extra[0] is None


def test_rfc3339_with_offset_equals_epoch_milliseconds() -> None:
    d = _decode(
        ("telemetry/walkthrough/a", _reading(ts="2026-11-22T08:00:00+08:00")),
        ("telemetry/walkthrough/b", _reading(ts=NOW_MS)),
    )
    assert d.batch.ts_us.tolist() == [NOW_US, NOW_US]


def test_unknown_fields_are_kept() -> None:
    d = _decode(("telemetry/walkthrough/car-1", _reading(nh3=12.5, sensor={"id": "x"})))
    assert d.batch.extra[0] == {"nh3": 12.5, "sensor": {"id": "x"}}


def test_array_payload_keeps_good_elements_and_dead_letters_bad_ones() -> None:
    payload = [_reading(ts=NOW_MS - 2000), {"ts": NOW_MS - 1000, "lat": "north"}, _reading()]
    d = _decode(("telemetry/walkthrough/car-1", payload))
    assert len(d.batch) == 2
    assert d.item_of.tolist() == [0, 2]
    [bad] = d.dead
    assert bad.reason == "schema" and bad.item_index == 1
    assert "lat" in bad.detail
    assert msgspec.json.decode(bad.payload) == payload[1]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("telemetry/walkthrough/car-1", "{not json", "malformed_json"),
        ("telemetry/walkthrough/car-1", b"\xff\xfe{}", "malformed_json"),
        ("telemetry/walkthrough/car-1", '{"ts": 1, "lat": NaN, "lon": 1}', "malformed_json"),
        ("telemetry/walkthrough/car-1", "42", "schema"),
        ("telemetry/walkthrough/car-1", "[]", "schema"),
        ("telemetry/walkthrough/car-1", [_reading()] * 11, "too_many_readings"),
        ("telemetry/walkthrough/car-1", "x" * 5000, "oversized"),
        ("telemetry/walkthrough/car-1", {"ts": NOW_MS, "lat": 1.0}, "schema"),
        ("telemetry/walkthrough/car-1", _reading(pm25="high"), "schema"),
        ("telemetry/walkthrough/car-1", _reading(ts="2026-11-22T00:00:00"), "schema"),
        ("telemetry/walkthrough/car-1", _reading(flag="normal"), "schema"),
        ("telemetry/walkthrough/car-1", _reading(lat=True), "schema"),
        ("telemetry/tractor/car-1", _reading(), "unknown_kind"),
        ("telemetry/walkthrough", _reading(), "bad_topic"),
        ("other/walkthrough/car-1", _reading(), "bad_topic"),
        ("telemetry/walkthrough/car-1/extra", _reading(), "bad_topic"),
    ],
)
def test_bad_message_becomes_a_dead_letter_with_its_reason(
    topic: str, payload: object, reason: str
) -> None:
    d = _decode((topic, payload))
    assert d.batch is None
    [letter] = d.dead
    assert letter.reason == reason
    assert letter.detail
    assert letter.topic == topic


def test_one_bad_message_does_not_affect_its_neighbours() -> None:
    d = _decode(
        ("telemetry/walkthrough/a", _reading()),
        ("telemetry/walkthrough/b", "garbage"),
        ("telemetry/walkthrough/c", _reading()),
    )
    assert d.batch.vehicle_id.tolist() == ["a", "c"]
    assert d.message_of.tolist() == [0, 2]
    assert [x.reason for x in d.dead] == ["malformed_json"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"lat": 0.0, "lon": 0.0}, "bad_coordinates"),
        ({"lat": 91.0}, "bad_coordinates"),
        ({"lon": -181.0}, "bad_coordinates"),
        ({"ts": NOW_MS + 3_600_000}, "clock_future"),
        ({"ts": NOW_MS - 8 * 86_400_000}, "clock_past"),
        ({"ts": 0}, "clock_past"),
        ({"rh_pct": 140.0}, "out_of_range"),
        ({"pm25": -5.0}, "out_of_range"),
        ({"speed_kmh": 900.0}, "out_of_range"),
        ({"pm10": 1e308 * 10}, "out_of_range"),
    ],
)
def test_implausible_reading_is_rejected_with_reason(
    overrides: dict[str, float], reason: str
) -> None:
    if overrides.get("pm10") == float("inf"):
        # JSON cannot carry infinity; a decoder that produced one must still be caught.
        d = _decode(("telemetry/walkthrough/car-1", _reading()))
        d.batch.pm10[0] = np.inf
    else:
        d = _decode(("telemetry/walkthrough/car-1", _reading(**overrides)))
    assert len(d.batch) == 1
    ok, why, detail = check_walkthrough(d.batch, now_us=NOW_US, limits=LIMITS)
    assert ok.tolist() == [False]
    assert why[0] == reason
    assert detail[0]


def test_plausible_readings_pass_validation() -> None:
    d = _decode(
        ("telemetry/walkthrough/a", _reading(ts=NOW_MS - 3600_000, rh_pct=55, wind_dir_deg=359.5)),
        ("telemetry/walkthrough/b", _reading(ts=NOW_MS + 60_000, pm25=0.0, co=0.4)),
    )
    ok, why, _ = check_walkthrough(d.batch, now_us=NOW_US, limits=LIMITS)
    assert ok.tolist() == [True, True]
    assert why.tolist() == ["", ""]
