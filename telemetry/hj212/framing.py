"""HJ 212 packet framing over a byte stream (docs/domain.md §1.1).

A packet is ``##``, the data segment's length as four decimal digits, the data segment, four
hex digits of CRC and ``\\r\\n``. :class:`Framer` takes the bytes of a stream as they arrive
(a packet split across reads, several packets in one read, garbage between them) and returns
what it can delimit: whole packets (:class:`Frame`, CRC not yet checked), packets whose
declared length does not match where they end (:class:`BadFrame`), and bytes outside any
packet (:class:`Garbage`). It resynchronises on the next ``##``; it never guesses a length.

A data segment holds no ``\\r\\n`` and no ``##`` (it is printable ASCII with ``&&`` around
CP), so either one before the declared end proves the length wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_SEGMENT", "BadFrame", "Frame", "Framer", "Garbage", "Piece", "split_packet"]

HEADER = b"##"
TRAILER = b"\r\n"
#: The longest data segment four length digits can declare (the standard's own limit is 1024
#: characters; longer ones are accepted and reported by the packet parser's checks).
MAX_SEGMENT = 9999
_OVERHEAD = 2 + 4 + 4 + 2


@dataclass(frozen=True, slots=True)
class Frame:
    """A delimited packet: ``raw`` is the whole packet, ``segment`` its data segment, ``crc``
    the four characters sent as its CRC."""

    raw: bytes
    segment: bytes
    crc: bytes


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Bytes that start like a packet but cannot be one; ``reason`` is a dead-letter code."""

    raw: bytes
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes outside any packet (skipped while resynchronising)."""

    raw: bytes


Piece = Frame | BadFrame | Garbage


def _is_digits(b: bytes) -> bool:
    return len(b) == 4 and all(48 <= c <= 57 for c in b)


class Framer:
    """Incremental framer: :meth:`feed` the bytes of a stream as they come."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Piece]:
        self._buf += data
        out: list[Piece] = []
        while self._step(out):
            pass
        return out

    def flush(self) -> list[Piece]:
        """End of stream: whatever is held back is an incomplete packet (or garbage)."""
        rest, self._buf = bytes(self._buf), bytearray()
        if not rest:
            return []
        if rest.startswith(HEADER):
            return [BadFrame(rest, "hj212_truncated", "the stream ended inside a packet")]
        return [Garbage(rest)]

    def _step(self, out: list[Piece]) -> bool:
        buf = self._buf
        if not buf:
            return False
        start = buf.find(HEADER)
        if start < 0:
            # Keep a last '#': it may be the first half of the next header.
            keep = 1 if buf[-1:] == b"#" else 0
            if len(buf) > keep:
                out.append(Garbage(bytes(buf[: len(buf) - keep])))
                del buf[: len(buf) - keep]
            return False
        if start > 0:
            out.append(Garbage(bytes(buf[:start])))
            del buf[:start]
            return True
        if len(buf) < 6:
            return False
        length = bytes(buf[2:6])
        if not _is_digits(length):
            return self._bad(out, 2, "hj212_length", f"length field {length!r} is not 4 digits")
        n = int(length)
        end = 6 + n + 4 + 2
        # A CRLF or another header before the declared end proves the length wrong.
        # (A match must lie wholly before the trailer's place.)
        crlf = buf.find(TRAILER, 6, min(len(buf), end - 1))
        header = buf.find(HEADER, 6, min(len(buf), end - 2))
        if crlf >= 0 or header >= 0:
            where = min(i for i in (crlf, header) if i >= 0)
            actual = max(0, where - 6 - 4)
            return self._bad(
                out, 6, "hj212_length", f"declared length {n}, but the packet ends after {actual}"
            )
        if len(buf) < end:
            return False
        if buf[end - 2 : end] != TRAILER:
            return self._bad(
                out, 6, "hj212_length", f"declared length {n}, but no CRLF where it ends"
            )
        raw = bytes(buf[:end])
        del buf[:end]
        out.append(Frame(raw, raw[6 : 6 + n], raw[6 + n : 6 + n + 4]))
        return True

    def _bad(self, out: list[Piece], scan_from: int, reason: str, detail: str) -> bool:
        """Dead-letter up to and including the next CRLF (or up to the next header), then
        resynchronise. Waits for more bytes while neither has arrived, within a bound."""
        buf = self._buf
        crlf = buf.find(TRAILER, scan_from)
        header = buf.find(HEADER, 2)
        cuts = [i for i in (crlf + 2 if crlf >= 0 else -1, header) if i > 0]
        if not cuts:
            if len(buf) <= MAX_SEGMENT + _OVERHEAD:
                return False
            cut = len(buf)
        else:
            cut = min(cuts)
        out.append(BadFrame(bytes(buf[:cut]), reason, detail))
        del buf[:cut]
        return True


def split_packet(payload: bytes) -> Frame | BadFrame:
    """One packet from a payload that holds exactly one (an MQTT message beginning with
    ``##``); anything else is a :class:`BadFrame` with its reason."""
    framer = Framer()
    pieces = framer.feed(payload) + framer.flush()
    frames = [p for p in pieces if not isinstance(p, Garbage) or p.raw.strip()]
    if len(frames) == 1 and isinstance(frames[0], Frame | BadFrame):
        return frames[0]
    if frames and isinstance(frames[0], BadFrame):
        return BadFrame(payload, frames[0].reason, frames[0].detail)
    if not frames:
        return BadFrame(payload, "hj212_truncated", "no packet in the payload")
    return BadFrame(payload, "hj212_length", "the payload holds more than one packet")
