"""Property-based: whatever bytes a vehicle sends, decoding and batch conversion of every kind
raise nothing, and every message ends as records or as dead letters with a reason.

Example counts are bounded (``max_examples``) so that the suite stays fast; hypothesis keeps
the failing examples it finds in its database for the next run.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.ingest.decode import Decoder
from telemetry.kinds.checks import Limits
from telemetry.kinds.contract import Kind, KindPipeline, Message
from telemetry.kinds.emergency.pipeline import EmergencyPipeline
from telemetry.kinds.remote_sensing.pipeline import RemoteSensingPipeline
from telemetry.kinds.walkthrough.pipeline import WalkthroughPipeline
from telemetry.settings import Settings

NOW_US = 1_795_305_600_000_000  # 2026-11-22T00:00:00Z
LIMITS = Limits(max_future_skew_s=300, max_age_s=7 * 86400)
SETTINGS = Settings()
PIPELINES: dict[Kind, KindPipeline[Any, Any]] = {
    p.kind: p
    for p in (
        WalkthroughPipeline(SETTINGS),
        RemoteSensingPipeline(SETTINGS),
        EmergencyPipeline(SETTINGS),
    )
}
KINDS = [k.value for k in Kind]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Numbers at and beyond every boundary the path has: int64, uint64, epoch-ms bounds, the
# double range, subnormals, huge magnitudes.
EXTREME_INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(
        [0, -1, 2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64, -(2**63), 10**16, -(10**16), 10**30]
    ),
)
EXTREME_FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1.7976931348623157e308]),
)
TIMES = st.one_of(
    EXTREME_INTS,
    st.sampled_from(
        [
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
            "2026-11-22T00:00:00Z",
            "2026-11-22T08:00:00+08:00",
            "2026-11-22T08:00:00",
            "not a time",
        ]
    ),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), EXTREME_INTS, EXTREME_FLOATS, st.text(max_size=8), TIMES
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _record(kind: Kind) -> st.SearchStrategy[dict[str, Any]]:
    """Records shaped like the kind's, with extreme or wrongly typed values."""
    fields = PIPELINES[kind].record.__struct_fields__
    value = st.one_of(EXTREME_INTS, EXTREME_FLOATS, SCALARS)
    optional: dict[str, st.SearchStrategy[Any]] = {name: value for name in fields}
    optional["ts"] = TIMES
    del optional["lat"], optional["lon"]
    if kind is Kind.EMERGENCY:
        gas = st.fixed_dictionaries(
            {
                "value": st.one_of(EXTREME_FLOATS, EXTREME_INTS),
                "unit": st.sampled_from(["ppm", "PPM", "Mg/M3", "ug/m3", "ppb", "%", ""]),
            },
            optional={"sensor": st.text(max_size=4)},
        )
        optional["gases"] = st.dictionaries(st.text(max_size=5), gas, max_size=3)
    return st.fixed_dictionaries({"lat": EXTREME_FLOATS, "lon": EXTREME_FLOATS}, optional=optional)


def _payload(kind: Kind) -> st.SearchStrategy[bytes]:
    one = _record(kind)
    body = st.one_of(one, st.lists(one, min_size=1, max_size=4), ANY_JSON)
    return body.map(lambda v: json.dumps(v).encode())


def _decode_and_convert(messages: list[Message]) -> None:
    """Decode, convert and check as the worker does (``_prepare`` aside): nothing raises, and
    every message is accounted for by records or dead letters."""
    decoder = Decoder(
        {k: p.record for k, p in PIPELINES.items()},
        topic_prefix="telemetry",
        max_payload_bytes=SETTINGS.max_payload_bytes,
        max_readings_per_message=SETTINGS.max_readings_per_message,
    )
    decoded = decoder.decode(messages)
    accounted = {d.received_us for d in decoded.dead}
    for kind, rows in decoded.rows.items():
        pipeline = PIPELINES[kind]
        batch = pipeline.to_batch(rows)
        ok, reason, detail = pipeline.check(batch, now_us=NOW_US, limits=LIMITS)
        assert len(ok) == len(rows) == len(batch)
        assert all(reason[~ok]) and all(detail[~ok])
        assert batch.ts_us.dtype == np.int64
        accounted |= {messages[m].received_us for m in rows.message_of}
    assert accounted == {m.received_us for m in messages}


@FAST
@given(payload=st.binary(max_size=300), kind=st.sampled_from(KINDS))
def test_arbitrary_bytes_never_raise_and_are_accounted_for(payload: bytes, kind: str) -> None:
    _decode_and_convert([Message(f"telemetry/{kind}/v1", payload, 1)])


@FAST
@given(value=ANY_JSON, kind=st.sampled_from(KINDS))
def test_arbitrary_json_never_raises_and_is_accounted_for(value: Any, kind: str) -> None:
    _decode_and_convert([Message(f"telemetry/{kind}/v1", json.dumps(value).encode(), 1)])


@FAST
@given(data=st.data())
def test_records_with_extreme_numbers_convert_or_are_dead_lettered(data: st.DataObject) -> None:
    messages = []
    for i in range(data.draw(st.integers(min_value=1, max_value=6))):
        kind = data.draw(st.sampled_from(list(Kind)))
        payload = data.draw(_payload(kind))
        messages.append(Message(f"telemetry/{kind.value}/v{i % 2}", payload, i + 1))
    _decode_and_convert(messages)


@FAST
@given(
    record=_record(Kind.WALKTHROUGH),
    key=st.sampled_from(["ts", "lat", "lon", "pm25", "flag", "driver"]),
    array=st.booleans(),
)
def test_a_repeated_key_is_a_schema_dead_letter(
    record: dict[str, Any], key: str, array: bool
) -> None:
    # The key once more at the end of the object (twice if the record does not have it).
    times = 1 if key in record else 2
    text = json.dumps(record)[:-1] + "".join(f', "{key}": {i}' for i in range(times)) + "}"
    payload = (f"[{text}]" if array else text).encode()
    decoder = Decoder(
        {Kind.WALKTHROUGH: WalkthroughPipeline.record},
        topic_prefix="telemetry",
        max_payload_bytes=4096,
        max_readings_per_message=10,
    )
    decoded = decoder.decode([Message("telemetry/walkthrough/v", payload, 1)])
    assert not decoded.rows
    assert [d.reason for d in decoded.dead] == ["schema"]
    assert f"duplicate key {key!r}" in decoded.dead[0].detail
