"""Measurement time: the contract's timestamps, epoch microseconds, and China Standard Time.

Times travel through the service as ``int64`` epoch microseconds UTC. Standards and rules count
calendar days and months in China Standard Time (UTC+8): a standard takes effect at local
midnight.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

__all__ = [
    "CST",
    "CST_OFFSET_US",
    "MAX_EPOCH_MS",
    "PG_EPOCH_US",
    "EpochMs",
    "Timestamp",
    "cst_midnight_us",
    "ts_us",
]

#: A record's measurement time: RFC 3339 with a UTC offset, or epoch milliseconds (an int).
Timestamp = Annotated[dt.datetime, msgspec.Meta(tz=True)]

#: The largest epoch-millisecond magnitude a record may carry: the integers a JSON producer
#: represents exactly (2^53 - 1, about 285,000 years). Within it, microseconds and their
#: differences from now fit in int64 (no overflow, no silent wrap-around in numpy), so an
#: absurd time is dead-lettered by the clock checks or, beyond it, by the decoder (schema).
MAX_EPOCH_MS = 2**53 - 1
#: Epoch milliseconds, as the contract's integer form of ``ts``.
EpochMs = Annotated[int, msgspec.Meta(ge=-MAX_EPOCH_MS, le=MAX_EPOCH_MS)]

#: China Standard Time, the time zone of the standards' effective dates.
CST = dt.timezone(dt.timedelta(hours=8), "CST")
CST_OFFSET_US = 8 * 3_600 * 1_000_000

#: PostgreSQL's binary timestamps count microseconds from 2000-01-01 UTC: this many epoch µs.
PG_EPOCH_US = 946_684_800_000_000

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.datetime.resolution  # one microsecond
_EPOCH_DAY = dt.date(1970, 1, 1).toordinal()
_DAY_US = 86_400 * 1_000_000


def ts_us(ts: dt.datetime | int) -> int:
    """Epoch microseconds of a :data:`Timestamp` (an RFC 3339 time or epoch milliseconds)."""
    if isinstance(ts, int):
        return ts * 1000
    return (ts - _EPOCH) // _US


def cst_midnight_us(day: dt.date) -> int:
    """Epoch microseconds UTC of 00:00 China Standard Time on ``day``."""
    if isinstance(day, dt.datetime):
        raise TypeError(f"expected a calendar date, got a datetime: {day!r}")
    return (day.toordinal() - _EPOCH_DAY) * _DAY_US - CST_OFFSET_US
