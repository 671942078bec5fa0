"""HJ 212-2017 (and HJ/T 212-2005 as tolerated deviations): framing, CRC, packets, factor
codes. Pure: bytes and strings in, values out; no I/O, no clock, no database (docs/domain.md
§1)."""
