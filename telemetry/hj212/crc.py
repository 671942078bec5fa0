"""The CRC of an HJ 212 data segment (docs/domain.md §1.1, §1.6).

The standard's Appendix A algorithm is not CRC-16/MODBUS: for every byte the register becomes
``(reg >> 8) ^ byte`` (Modbus XORs the byte into the whole register), then eight
shift-and-XOR-0xA001 steps. Modbus (and Modbus with its two bytes swapped) are here only
because real devices send them; accepting them is a per-analyser tolerance, never the default.
"""

from __future__ import annotations

__all__ = ["crc_hex", "hj212_crc", "hj212_crc_bitwise", "modbus_crc", "swap_bytes"]


def _table() -> tuple[int, ...]:
    out = []
    for value in range(256):
        for _ in range(8):
            value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
        out.append(value)
    return tuple(out)


_TABLE = _table()


def hj212_crc(data: bytes) -> int:
    """HJ 212-2017 Appendix A: start at 0xFFFF; per byte ``reg = (reg >> 8) ^ byte``, then
    eight steps of shift right, XOR 0xA001 when the bit shifted out was 1."""
    # After ``(reg >> 8) ^ byte`` the register holds 8 bits, so the eight steps are one
    # look-up in the same table as Modbus (tests/test_hj212_parser.py checks it bit by bit).
    table = _TABLE
    reg = 0xFFFF
    for byte in data:
        reg = table[(reg >> 8) ^ byte]
    return reg


def hj212_crc_bitwise(data: bytes) -> int:
    """Appendix A step by step, as the standard writes it (the reference for the tests)."""
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
    return reg


def modbus_crc(data: bytes) -> int:
    """CRC-16/MODBUS (reflected 0xA001, start 0xFFFF, ``reg ^= byte``), for contrast and for
    analysers that send it instead of the standard's CRC."""
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ _TABLE[(reg ^ byte) & 0xFF]
    return reg


def swap_bytes(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


def crc_hex(data: bytes) -> str:
    """The standard's CRC of ``data`` as the packet carries it: four upper-case hex digits."""
    return f"{hj212_crc(data):04X}"
