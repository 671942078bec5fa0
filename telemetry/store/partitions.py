"""Vehicles hashed into a fixed number of detection partitions (docs/adr/0011).

The same hash is written once in Python and once in SQL, so that a detector can select a
partition's rows in the database and a test can check both agree: the first 32 bits of the
MD5 of the vehicle id, modulo the partition count. MD5 is used as a well-spread, portable
hash (PostgreSQL's own ``hashtext`` is not documented as stable across versions), not for
security.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from telemetry.columns import IntArray

__all__ = ["partition_of", "partition_sql"]


def partition_of(vehicle_ids: Iterable[str], count: int) -> IntArray:
    """Each vehicle's partition in ``[0, count)``."""
    if count < 1:
        raise ValueError(f"the partition count must be at least 1, not {count}")
    hashes = [int.from_bytes(hashlib.md5(v.encode()).digest()[:4], "big") for v in vehicle_ids]
    return np.asarray(hashes, dtype=np.int64) % count


def partition_sql(column: str, count: str) -> str:
    """The SQL expression of :func:`partition_of` for the text ``column`` and the integer
    expression ``count`` (a parameter such as ``$4``)."""
    return f"((('x' || left(md5({column}), 8))::bit(32)::int::bigint & 4294967295) % {count})"
