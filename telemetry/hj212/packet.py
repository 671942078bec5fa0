"""HJ 212 data segments: header fields, the CP data area, CRC checks, replies and split
packets (docs/domain.md §1.1, §1.4 to §1.6).

Strict by default. A deviation real analysers are known to make is accepted only when the
caller passes it in ``tolerate`` (per registered analyser), and every accepted one is
reported in :attr:`Packet.deviations` so that it can be counted.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

from telemetry.hj212.crc import crc_hex, hj212_crc, modbus_crc, swap_bytes

__all__ = [
    "Deviation",
    "Packet",
    "PacketError",
    "Reassembler",
    "build_packet",
    "check_crc",
    "data_reply",
    "local_time_us",
    "notify_reply",
    "parse_segment",
    "peek_mn",
    "set_time_request",
    "time_zone",
]

#: Flag's version bits (V5..V0) for HJ 212-2017.
VERSION_2017 = 1
FLAG_REPLY = 0x01  # A: the sender asks for a reply
FLAG_SPLIT = 0x02  # D: the packet carries PNUM / PNO


class Deviation(StrEnum):
    """What a real analyser may do differently from the standard, each a tolerance that is
    off unless switched on for that analyser."""

    CRC_MODBUS = "crc_modbus"  # CRC-16/MODBUS instead of Appendix A
    CRC_MODBUS_SWAPPED = "crc_modbus_swapped"  # Modbus with its two bytes swapped
    CRC_LOWERCASE = "crc_lowercase"  # the CRC in lower-case hex
    FLAG_VERSION = "flag_version"  # version bits other than 2017's, or no Flag (2005)
    QN_LENGTH = "qn_length"  # QN of 14 or 18 digits instead of 17
    SEMICOLON_SUBVALUES = "semicolon_subvalues"  # ';' between sub-values of one factor
    TRAILING_SEMICOLON = "trailing_semicolon"  # a stray ';' before the closing && or CRC
    FACTOR_CODES_2005 = "factor_codes_2005"  # HJ/T 212-2005 factor codes


class PacketError(ValueError):
    """A packet the standard (with the analyser's tolerances) does not allow; ``reason`` is
    the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Packet:
    qn: str | None
    st: str
    cn: str
    pw: str | None
    mn: str
    flag: int | None
    pnum: int | None
    pno: int | None
    #: CP's items in order, each its (field, value) sub-values.
    items: tuple[tuple[tuple[str, str], ...], ...]
    deviations: tuple[Deviation, ...] = ()
    values: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def version(self) -> int | None:
        return None if self.flag is None else self.flag >> 2

    @property
    def reply_requested(self) -> bool:
        return self.flag is not None and bool(self.flag & FLAG_REPLY)

    @property
    def split(self) -> bool:
        return self.flag is not None and bool(self.flag & FLAG_SPLIT)


_MN = re.compile(rb"(?:^|;)MN=([^;]*)")
_HEADER = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO")
_ST = re.compile(r"[0-9A-Z]{2}")
_CN = re.compile(r"[0-9]{4}")
_PW = re.compile(r"[!-~]{6}")
_MN_TEXT = re.compile(r"[0-9A-Za-z_-]{1,24}")
_FIELD = re.compile(r"[A-Za-z0-9_-]+")


def peek_mn(segment: bytes) -> str | None:
    """The MN of a data segment, read without checking anything else (to find the analyser,
    and so its tolerances, before the packet is checked)."""
    found = _MN.search(segment.split(b"CP=&&", 1)[0])
    if found is None:
        return None
    try:
        return found.group(1).decode("ascii")
    except UnicodeDecodeError:
        return None


def check_crc(segment: bytes, sent: bytes, tolerate: Collection[str] = ()) -> list[Deviation]:
    """Check the CRC sent for ``segment``; the deviations it needed (none when it is the
    standard's, in upper-case hex). Raises ``PacketError('hj212_crc')``."""
    try:
        text = sent.decode("ascii")
        value = int(text, 16) if re.fullmatch(r"[0-9A-Fa-f]{4}", text) else None
    except UnicodeDecodeError:
        value = None
    if value is None:
        raise PacketError("hj212_crc", f"CRC {sent!r} is not four hex digits")
    deviations: list[Deviation] = []
    if text != text.upper():
        if Deviation.CRC_LOWERCASE not in tolerate:
            raise PacketError("hj212_crc", f"CRC {text!r} in lower-case hex")
        deviations.append(Deviation.CRC_LOWERCASE)
    expected = hj212_crc(segment)
    if value == expected:
        return deviations
    if Deviation.CRC_MODBUS in tolerate or Deviation.CRC_MODBUS_SWAPPED in tolerate:
        modbus = modbus_crc(segment)
        if Deviation.CRC_MODBUS in tolerate and value == modbus:
            return [*deviations, Deviation.CRC_MODBUS]
        if Deviation.CRC_MODBUS_SWAPPED in tolerate and value == swap_bytes(modbus):
            return [*deviations, Deviation.CRC_MODBUS_SWAPPED]
    raise PacketError("hj212_crc", f"CRC {text} sent, {expected:04X} computed (Appendix A)")


def _int(name: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise PacketError("hj212_field", f"{name}={value!r} is not an integer {low}..{high}")
    return int(value)


def parse_segment(segment: bytes, tolerate: Collection[str] = ()) -> Packet:
    """A data segment's header and CP, checked against the standard (and ``tolerate``).
    Raises :class:`PacketError` (``hj212_field``)."""
    try:
        text = segment.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PacketError("hj212_field", f"the data segment is not UTF-8: {exc}") from None
    deviations: list[Deviation] = []

    def deviate(what: Deviation, detail: str) -> None:
        if what not in tolerate:
            raise PacketError("hj212_field", detail)
        if what not in deviations:
            deviations.append(what)

    at = text.find("CP=&&")
    if at < 0:
        raise PacketError("hj212_field", "no CP=&& data area")
    if at and text[at - 1] != ";":
        raise PacketError("hj212_field", "the header does not end with ';' before CP")
    header: dict[str, str] = {}
    for part in text[: max(0, at - 1)].split(";") if at else []:
        name, eq, value = part.partition("=")
        if not eq or name not in _HEADER:
            raise PacketError("hj212_field", f"unknown header field {part!r}")
        if name in header:
            raise PacketError("hj212_field", f"header field {name} twice")
        header[name] = value
    body = text[at + 5 :]
    if body.endswith("&&;"):
        deviate(Deviation.TRAILING_SEMICOLON, "a ';' after the closing && of CP")
        body = body[:-1]
    if not body.endswith("&&") or len(body) < 2:
        raise PacketError("hj212_field", "CP does not end with &&")
    body = body[:-2]
    if "&&" in body:
        raise PacketError("hj212_field", "&& inside CP")
    if body.endswith(";"):
        deviate(Deviation.TRAILING_SEMICOLON, "a stray ';' before the closing && of CP")
        body = body[:-1]

    for name in ("ST", "CN", "MN"):
        if name not in header:
            raise PacketError("hj212_field", f"no {name}")
    st, cn, mn = header["ST"], header["CN"], header["MN"]
    if not _ST.fullmatch(st):
        raise PacketError("hj212_field", f"ST={st!r} is not a system code")
    if not _CN.fullmatch(cn):
        raise PacketError("hj212_field", f"CN={cn!r} is not a 4-digit command code")
    if not _MN_TEXT.fullmatch(mn):
        raise PacketError("hj212_field", f"MN={mn!r} is not 1 to 24 letters or digits")
    pw = header.get("PW")
    if pw is None or not _PW.fullmatch(pw):
        raise PacketError("hj212_field", f"PW={pw!r} is not 6 characters")
    qn = header.get("QN")
    if qn is not None:
        if not qn.isdigit() or len(qn) not in (14, 17, 18):
            raise PacketError("hj212_field", f"QN={qn!r} is not a 17-digit time stamp")
        if len(qn) != 17:
            deviate(Deviation.QN_LENGTH, f"QN of {len(qn)} digits, not 17")
    flag: int | None = None
    if "Flag" in header:
        flag = _int("Flag", header["Flag"], 0, 255)
        if flag >> 2 != VERSION_2017:
            deviate(Deviation.FLAG_VERSION, f"Flag={flag}: version bits {flag >> 2}, not 2017's 1")
    else:
        deviate(Deviation.FLAG_VERSION, "no Flag (HJ/T 212-2005)")
    pnum = pno = None
    if flag is not None and flag & FLAG_SPLIT:
        if "PNUM" not in header or "PNO" not in header:
            raise PacketError("hj212_field", "Flag's D bit set without PNUM and PNO")
        pnum = _int("PNUM", header["PNUM"], 1, 9999)
        pno = _int("PNO", header["PNO"], 1, pnum)
    elif "PNUM" in header or "PNO" in header:
        raise PacketError("hj212_field", "PNUM / PNO without Flag's D bit")

    items: list[tuple[tuple[str, str], ...]] = []
    values: dict[str, str] = {}
    factor_item: dict[str, int] = {}
    for index, item in enumerate(body.split(";") if body else []):
        pairs = []
        for sub in item.split(","):
            name, eq, value = sub.partition("=")
            if not eq or not _FIELD.fullmatch(name):
                raise PacketError("hj212_field", f"CP item {sub!r} is not field=value")
            if name in values:
                raise PacketError("hj212_field", f"CP field {name} twice")
            values[name] = value
            pairs.append((name, value))
            factor = name.split("-", 1)[0] if "-" in name else None
            if factor is not None:
                first = factor_item.setdefault(factor, index)
                if first != index:
                    deviate(
                        Deviation.SEMICOLON_SUBVALUES,
                        f"factor {factor} split across CP items (';' where ',' belongs)",
                    )
        items.append(tuple(pairs))
    return Packet(
        qn, st, cn, pw, mn, flag, pnum, pno, tuple(items), tuple(deviations), values=values
    )


# -- time ----------------------------------------------------------------------------------

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


def time_zone(name: str | None) -> tzinfo:
    """``None`` (China Standard Time), a fixed offset ``+08:00`` or an IANA name."""
    if not name:
        return CHINA_STANDARD_TIME
    found = _OFFSET.fullmatch(name)
    if found:
        sign = 1 if found.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(found.group(2)), minutes=int(found.group(3))))
    return ZoneInfo(name)


def local_time_us(value: str, tz: tzinfo, name: str = "DataTime") -> int:
    """An N14 ``YYYYMMDDhhmmss`` local time as epoch microseconds UTC."""
    if len(value) != 14 or not value.isdigit():
        raise PacketError("hj212_field", f"{name}={value!r} is not YYYYMMDDhhmmss")
    try:
        moment = datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=tz)
    except ValueError:
        raise PacketError("hj212_field", f"{name}={value!r} is not a valid time") from None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# -- building packets and replies ----------------------------------------------------------


def build_packet(segment: str) -> bytes:
    """A whole packet around ``segment``: header, length, CRC (Appendix A) and CRLF."""
    data = segment.encode("utf-8")
    if len(data) > 9999:
        raise ValueError("a data segment longer than 9999 bytes cannot be framed")
    return b"##%04d%s%s\r\n" % (len(data), data, crc_hex(data).encode())


def _reply(
    packet: Packet, st: str, cn: str, cp: str, flag: int = 4, qn: str | None = None
) -> bytes:
    qn = packet.qn if qn is None else qn
    head = f"QN={qn};" if qn else ""
    return build_packet(
        f"{head}ST={st};CN={cn};PW={packet.pw};MN={packet.mn};Flag={flag};CP=&&{cp}&&"
    )


def data_reply(packet: Packet) -> bytes:
    """CN 9014, the data reply to an upload that asked for one (Flag's A bit)."""
    return _reply(packet, "91", "9014", "")


def notify_reply(packet: Packet) -> bytes:
    """CN 9013, the reply to a notification (e.g. the time-calibration request 1013)."""
    return _reply(packet, "91", "9013", "")


def set_time_request(packet: Packet, now: datetime) -> bytes:
    """CN 1012 (set the field device's time) with ``SystemTime``: the platform's answer to a
    time-calibration request (1013). ``now`` is in the analyser's time zone."""
    qn = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
    cp = f"SystemTime={now.strftime('%Y%m%d%H%M%S')}"
    return _reply(packet, packet.st, "1012", cp, flag=4 | FLAG_REPLY, qn=qn)


# -- split packets -------------------------------------------------------------------------


class Reassembler:
    """Puts split packets (Flag's D bit, PNUM/PNO) back together: :meth:`add` returns the
    whole packet once every part has arrived, else None. A group stays after it completes,
    so that a part delivered again (a batch retried, a message redelivered) yields the whole
    packet again rather than a new incomplete group; readings are stored once whatever
    arrives twice. At most ``max_groups`` groups are held (the oldest is dropped first)."""

    def __init__(self, max_groups: int = 1000) -> None:
        self._parts: dict[tuple[str, str | None, str, int], dict[int, Packet]] = {}
        self._max = max_groups

    def add(self, packet: Packet) -> Packet | None:
        if not packet.split or packet.pnum is None or packet.pno is None:
            return packet
        key = (packet.mn, packet.qn, packet.cn, packet.pnum)
        parts = self._parts.pop(key, None) or {}
        parts[packet.pno] = packet
        self._parts[key] = parts  # newest last
        while len(self._parts) > self._max:
            del self._parts[next(iter(self._parts))]
        if len(parts) < packet.pnum:
            return None
        ordered = [parts[i] for i in sorted(parts)]
        items = tuple(item for part in ordered for item in part.items)
        values: dict[str, str] = {}
        for part in ordered:
            values.update(part.values)
        deviations = tuple(dict.fromkeys(d for part in ordered for d in part.deviations))
        assert packet.flag is not None
        return replace(
            ordered[0],
            flag=packet.flag & ~FLAG_SPLIT,
            pnum=None,
            pno=None,
            items=items,
            deviations=deviations,
            values=values,
        )

    @property
    def pending(self) -> int:
        """Groups still waiting for a part."""
        return sum(1 for (_, _, _, n), parts in self._parts.items() if len(parts) < n)
