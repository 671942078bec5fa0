"""The HJ 212 parser (telemetry/hj212): the standard's CRC vectors, framing under every split
and merge of reads, header and CP parsing, tolerances, factor codes and units, replies."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.hj212.crc import crc_hex, hj212_crc, hj212_crc_bitwise, modbus_crc, swap_bytes
from telemetry.hj212.factors import convert, interval_values, realtime_values
from telemetry.hj212.framing import BadFrame, Frame, Framer, Garbage, split_packet
from telemetry.hj212.packet import (
    Deviation,
    PacketError,
    Reassembler,
    build_packet,
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

# docs/domain.md §1.1 and §1.6: the standard's example (1C80) and two public packets.
STANDARD = (
    b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&"
)
NO_QN = (
    b"ST=32;CN=2011;PW=123456;MN=NJGDKYYC202101q0001w0001;"
    b"CP=&&DataTime=20210305003817000;ele01-Rtd=1;ele02-Rtd=0&&"
)
WATER = (
    b"QN=20210301111100112;ST=21;CN=2011;PW=123456;MN=ZLDSZ20210127;Flag=8;CP=&&"
    b"DataTime=20210301111100;w01001-Rtd=8.33,w01001-Flag=N;w01009-Rtd=10.15,w01009-Flag=N;"
    b"w01010-Rtd=9.7,w01010-Flag=N;w01014-Rtd=1425,w01014-Flag=N;w01003-Rtd=13.10,"
    b"w01003-Flag=N;w21011-Rtd=0,w21011-Flag=N;w21001-Rtd=3.563168,w21001-Flag=N;"
    b"w21003-Rtd=0.09055002,w21003-Flag=N;w01019-Rtd=4.102818,w01019-Flag=N;w01008-Rtd=0,"
    b"w01008-Flag=N;w23002-Rtd=0,w23002-Flag=N&&"
)
AIR = (
    "QN=20240601083015123;ST=22;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;"
    "CP=&&DataTime=20240601083015;a34004-Rtd=38.2,a34004-Flag=N;a34002-Rtd=61.0,"
    "a34002-Flag=N;a21026-Rtd=8,a21026-Flag=N;a21004-Rtd=42,a21004-Flag=N;a05024-Rtd=95,"
    "a05024-Flag=N;a21005-Rtd=0.62,a21005-Flag=N;a01001-Rtd=26.4,a01001-Flag=N;"
    "a01002-Rtd=61.2,a01002-Flag=N&&"
)


@pytest.mark.parametrize(
    ("segment", "hj212", "modbus"),
    [(STANDARD, "1C80", 0x0759), (NO_QN, "8C41", 0x5553), (WATER, "7D00", 0xC170)],
)
def test_crc_is_appendix_a_not_modbus(segment: bytes, hj212: str, modbus: int) -> None:
    assert crc_hex(segment) == hj212 == f"{hj212_crc_bitwise(segment):04X}"
    assert modbus_crc(segment) == modbus
    assert hj212_crc(segment) != modbus


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_the_table_driven_crc_is_appendix_a_step_by_step(data: bytes) -> None:
    assert hj212_crc(data) == hj212_crc_bitwise(data)


def test_the_standards_example_packet_and_reply_are_rebuilt_exactly() -> None:
    assert build_packet(STANDARD.decode()) == b"##0101" + STANDARD + b"1C80\r\n"
    assert build_packet(AIR).startswith(b"##0343") and build_packet(AIR).endswith(b"1380\r\n")
    reply = data_reply(parse_segment(AIR.encode()))
    assert reply == (
        b"##0087QN=20240601083015123;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;"
        b"Flag=4;CP=&&&&2D00\r\n"
    )


def test_crc_tolerances_are_off_unless_switched_on() -> None:
    modbus = modbus_crc(STANDARD)
    good = b"1C80"
    assert check_crc(STANDARD, good) == []
    for sent, tolerance in (
        (b"%04X" % modbus, Deviation.CRC_MODBUS),
        (b"%04X" % swap_bytes(modbus), Deviation.CRC_MODBUS_SWAPPED),
        (b"1c80", Deviation.CRC_LOWERCASE),
    ):
        with pytest.raises(PacketError) as err:
            check_crc(STANDARD, sent)
        assert err.value.reason == "hj212_crc"
        assert check_crc(STANDARD, sent, {tolerance}) == [tolerance]
    with pytest.raises(PacketError):
        check_crc(STANDARD, b"1C81", set(Deviation))
    with pytest.raises(PacketError):
        check_crc(STANDARD, b"1C8G")


# -- framing --------------------------------------------------------------------------------

_segments = st.lists(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789=;,&-."), min_size=0, max_size=60
).map("".join)
_garbage = st.binary(max_size=20).filter(lambda b: b"#" not in b)


def _frames(pieces: list[object]) -> list[bytes]:
    return [p.raw for p in pieces if isinstance(p, Frame)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_garbage, _segments), min_size=1, max_size=6),
    st.data(),
)
def test_framing_survives_every_split_and_merge(
    stream: list[tuple[bytes, str]], data: st.DataObject
) -> None:
    packets = [build_packet(seg) for _, seg in stream]
    wire = b"".join(g + p for (g, _), p in zip(stream, packets, strict=True))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    framer, pieces = Framer(), []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        pieces += framer.feed(wire[start:end])
    pieces += framer.flush()
    assert _frames(pieces) == packets
    assert not [p for p in pieces if isinstance(p, BadFrame)]
    garbage = b"".join(p.raw for p in pieces if isinstance(p, Garbage))
    assert garbage == b"".join(g for g, _ in stream)


@settings(max_examples=200, deadline=None)
@given(_segments, _segments, st.integers(-3, 3).filter(bool), st.data())
def test_a_wrong_length_is_reported_and_the_next_packet_still_framed(
    first: str, second: str, delta: int, data: st.DataObject
) -> None:
    good = build_packet(first)
    n = len(first.encode()) + delta
    if n < 0:
        return
    broken = b"##%04d" % n + good[6:]
    after = build_packet(second)
    wire = broken + after
    cut = data.draw(st.integers(0, len(wire)))
    framer = Framer()
    pieces = framer.feed(wire[:cut]) + framer.feed(wire[cut:]) + framer.flush()
    bad = [p for p in pieces if isinstance(p, BadFrame)]
    assert [p.reason for p in bad] == ["hj212_length"]
    assert _frames(pieces) == [after]


def test_garbage_and_bad_length_digits_resynchronise_on_the_next_header() -> None:
    packet = build_packet(AIR)
    framer = Framer()
    pieces = framer.feed(b"noise\r\n##12x4junk\r\n" + packet + b"#")
    assert _frames(pieces) == [packet]
    assert [type(p).__name__ for p in pieces] == ["Garbage", "BadFrame", "Frame"]
    assert framer.pending == 1  # a lone '#' may start the next header


def test_a_single_payload_is_one_packet_or_its_reason() -> None:
    packet = build_packet(AIR)
    frame = split_packet(packet)
    assert isinstance(frame, Frame) and frame.crc == b"1380"
    assert isinstance(split_packet(packet[:-2]), BadFrame)
    assert split_packet(packet[:-2]).reason == "hj212_truncated"  # type: ignore[union-attr]
    assert split_packet(packet + packet).reason == "hj212_length"  # type: ignore[union-attr]
    assert isinstance(split_packet(packet.replace(b"##0343", b"##0342")), BadFrame)


# -- packets --------------------------------------------------------------------------------


def test_header_fields_flag_bits_and_cp() -> None:
    p = parse_segment(STANDARD)
    assert (p.qn, p.st, p.cn, p.pw, p.mn, p.flag) == (
        "20160801085857223", "32", "1062", "100000", "010000A8900016F000169DC0", 5
    )  # fmt: skip
    assert p.version == 1 and p.reply_requested and not p.split
    assert p.values == {"RtdInterval": "30"}
    air = parse_segment(AIR.encode())
    assert air.items[1] == (("a34004-Rtd", "38.2"), ("a34004-Flag", "N"))
    assert not air.reply_requested and peek_mn(AIR.encode()) == "010000A8900016F000169DC0"


@pytest.mark.parametrize(
    ("segment", "tolerance"),
    [
        (WATER, Deviation.FLAG_VERSION),  # Flag=8: version bits 2
        (NO_QN.replace(b"DataTime=20210305003817000;", b""), Deviation.FLAG_VERSION),  # no Flag
        (AIR.replace("QN=20240601083015123", "QN=20240601083015").encode(), Deviation.QN_LENGTH),
        (AIR.replace("38.2,a34004", "38.2;a34004").encode(), Deviation.SEMICOLON_SUBVALUES),
        (AIR.replace("N&&", "N;&&").encode(), Deviation.TRAILING_SEMICOLON),
        (AIR.encode() + b";", Deviation.TRAILING_SEMICOLON),
    ],
)
def test_each_deviation_is_refused_strictly_and_counted_when_tolerated(
    segment: bytes, tolerance: Deviation
) -> None:
    with pytest.raises(PacketError) as err:
        parse_segment(segment)
    assert err.value.reason == "hj212_field"
    assert tolerance in parse_segment(segment, {tolerance}).deviations


@pytest.mark.parametrize(
    "segment",
    [
        AIR.replace("CP=&&", "CP=&"),
        AIR.replace("ST=22", "ST=2"),
        AIR.replace("CN=2011", "CN=20x1"),
        AIR.replace("PW=123456", "PW=12"),
        AIR.replace("MN=010000A8900016F000169DC0", "MN="),
        AIR.replace("Flag=4", "Flag=400"),
        AIR.replace("Flag=4", "Flag=6"),  # split without PNUM / PNO
        AIR.replace(";ST=22", ";XX=1;ST=22"),
        AIR.replace("a34004-Rtd=38.2", "a34004-Rtd"),
        AIR.replace("a34002-Rtd=61.0", "a34004-Rtd=61.0"),
    ],
)
def test_bad_fields_are_refused(segment: str) -> None:
    with pytest.raises(PacketError) as err:
        parse_segment(segment.encode(), set(Deviation))
    assert err.value.reason == "hj212_field"


def test_split_packets_are_reassembled_in_order() -> None:
    head = "QN=20240601083015123;ST=22;CN=2011;PW=123456;MN=M1;Flag=7;PNUM=2"
    second = parse_segment(f"{head};PNO=2;CP=&&a34002-Rtd=61.0&&".encode())
    first = parse_segment(f"{head};PNO=1;CP=&&DataTime=20240601083015;a34004-Rtd=1&&".encode())
    r = Reassembler()
    assert r.add(second) is None and r.pending == 1
    whole = r.add(first)
    assert whole is not None and not whole.split and whole.reply_requested
    assert list(whole.values) == ["DataTime", "a34004-Rtd", "a34002-Rtd"]
    assert r.pending == 0


def test_datatime_is_china_standard_time_unless_configured() -> None:
    assert local_time_us("20240601083015", time_zone(None)) == 1717201815 * 10**6
    assert local_time_us("20240601003015", time_zone("+00:00")) == 1717201815 * 10**6
    assert local_time_us("20240601083015", time_zone("Asia/Shanghai")) == 1717201815 * 10**6
    for bad in ("2024060108301", "20241301083015"):
        with pytest.raises(PacketError):
            local_time_us(bad, time_zone(None))


def test_replies_to_a_time_calibration_request() -> None:
    p = parse_segment(b"QN=20240601083015123;ST=22;CN=1013;PW=123456;MN=M1;Flag=5;CP=&&&&")
    assert b"CN=9013" in notify_reply(p)
    request = set_time_request(p, datetime(2024, 6, 1, 8, 30, 16, 5000))
    frame = split_packet(request)
    assert isinstance(frame, Frame) and crc_hex(frame.segment) == frame.crc.decode()
    assert frame.segment.endswith(
        b"CN=1012;PW=123456;MN=M1;Flag=5;CP=&&SystemTime=20240601083016&&"
    )


# -- factors, units, flags, position --------------------------------------------------------


def test_factor_codes_become_channels_in_the_channels_units() -> None:
    values = parse_segment(AIR.encode()).values
    r = realtime_values(values)
    assert r.values == {
        "pm25": 38.2, "pm10": 61.0, "so2": 8000.0, "no2": 42000.0, "o3": 95.0, "co": 0.62,
        "temp_c": 26.4, "rh_pct": 61.2,
    }  # fmt: skip
    assert r.flag == "N" and r.extra == {}
    sent_in_ug = realtime_values(values, units={"a21026": "ug/m3", "a21004": "ug/m3"})
    assert sent_in_ug.values["so2"] == 8.0 and sent_in_ug.values["no2"] == 42.0
    assert convert(1.0, "ng/m3", "ug/m3") == 0.001


def test_unknown_codes_are_extra_channels_and_flags_become_the_quality_flag() -> None:
    values = {"a34004-Rtd": "5", "a34004-Flag": "D", "a24088-Rtd": "1.5", "a24088-Flag": "N"}
    r = realtime_values(values)
    assert r.flag == "D" and r.extra == {"a24088-Rtd": 1.5, "a24088-Flag": "N"}
    with pytest.raises(PacketError):
        realtime_values({"a34004-Rtd": "x"})
    with pytest.raises(PacketError):
        realtime_values({"a34004-Flag": "NN"})


def test_2005_factor_codes_only_when_tolerated() -> None:
    assert realtime_values({"02-Rtd": "0.1"}).extra == {"02-Rtd": 0.1}
    r = realtime_values({"02-Rtd": "0.1"}, tolerate={Deviation.FACTOR_CODES_2005})
    assert r.values == {"so2": 100.0} and r.deviations == [Deviation.FACTOR_CODES_2005]


def test_interval_data_keep_min_avg_max_cou() -> None:
    rows, _ = interval_values(
        {"DataTime": "20240601080000", "a21005-Min": "0.5", "a21005-Avg": "0.6",
         "a21005-Max": "0.9", "a21005-Flag": "N", "w00000-Cou": "12.5"}
    )  # fmt: skip
    assert [(r.factor, r.min, r.avg, r.max, r.cou, r.flag, r.unit) for r in rows] == [
        ("a21005", 0.5, 0.6, 0.9, None, "N", "mg/m3"),
        ("w00000", None, None, None, 12.5, None, None),
    ]


def test_position_from_configured_fields_or_the_registered_site() -> None:
    moving = Station("v1", "walkthrough", "M1")
    assert position_of({"Lng": "116.3", "Lat": "39.9"}, moving) is not None
    assert position_of({}, moving) is None
    custom = Station("v1", "walkthrough", "M1", position_fields=(("GpsX", "GpsY"),))
    pos = position_of({"GpsX-Rtd": "116.3", "GpsY-Rtd": "39.9"}, custom)
    assert pos is not None and (pos.lat, pos.lon) == (39.9, 116.3)
    parked = Station("v1", "walkthrough", "M1", lat=39.9, lon=116.3)
    assert position_of({}, parked) == position_of({}, parked)
    assert position_of({}, parked) is not None and position_of({}, parked).fields == ()  # type: ignore[union-attr]
    again = Station.from_options("v1", "walkthrough", "M1", None, None, None, custom.options())
    assert again == custom
