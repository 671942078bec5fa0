"""What a failure while committing a batch means for the batch: the one place that decides.

The ingest worker commits a micro-batch in one transaction. When that raises, the batch is
either retried as it is, taken apart to find the message that causes it, or both:

- :attr:`Failure.TRANSIENT` — the database is unreachable, restarting, cancelled the statement
  or is short of resources (SQLSTATE classes 08, 57, 40, 53; socket errors, timeouts, a
  closed connection). Nothing is wrong with the messages: retry the same batch with back-off,
  holding its acknowledgements, for as long as it takes.
- :attr:`Failure.DATA` — the database refused a value (classes 22 and 23, or asyncpg refusing
  to encode an argument). Some message carries it: bisect the batch and dead-letter the
  message that reproduces it alone (``db_rejected``).
- :attr:`Failure.UNKNOWN` — anything else: another SQLSTATE class, or an exception raised by
  a kind's own code inside the commit. Retry a few times (it may pass), then isolate the
  message that reproduces it alone and dead-letter it (``unprocessable``).
"""

from __future__ import annotations

from enum import StrEnum

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

__all__ = ["DATA_CLASSES", "TRANSIENT_CLASSES", "Failure", "classify", "describe"]

#: SQLSTATE classes that say "try again later": connection exception, operator intervention
#: (admin shutdown 57P01, query cancelled / statement timeout 57014, cannot connect now 57P03),
#: transaction rollback (serialization failure, deadlock), insufficient resources.
TRANSIENT_CLASSES = frozenset({"08", "57", "40", "53"})
#: SQLSTATE classes that say "this value is not acceptable": data exception, integrity
#: constraint violation.
DATA_CLASSES = frozenset({"22", "23"})


class Failure(StrEnum):
    TRANSIENT = "transient"
    DATA = "data"
    UNKNOWN = "unknown"


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` class of an exception raised while committing a batch."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate[:2] in TRANSIENT_CLASSES:
            return Failure.TRANSIENT
        if sqlstate[:2] in DATA_CLASSES:
            return Failure.DATA
        return Failure.UNKNOWN
    # asyncpg refusing to encode a query argument (e.g. an integer out of int8 range): the
    # value came from a message, so it is the data's fault. Checked before InterfaceError,
    # its base class.
    if isinstance(exc, asyncpg_base.DataError):
        return Failure.DATA
    if isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError)):
        # A closed or broken connection (pg_terminate_backend, a network drop) shows up as
        # ConnectionDoesNotExistError / InterfaceError / OSError.
        return Failure.TRANSIENT
    return Failure.UNKNOWN


def describe(exc: BaseException) -> str:
    """``Class: message`` (with the SQLSTATE when there is one), for logs and dead letters."""
    sqlstate = getattr(exc, "sqlstate", None)
    code = f" [SQLSTATE {sqlstate}]" if isinstance(sqlstate, str) and sqlstate else ""
    return f"{type(exc).__name__}{code}: {exc}"
