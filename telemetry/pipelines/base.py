"""What a vehicle kind plugs into the ingest worker.

The worker owns the MQTT intake, the micro-batch, the transaction, dead letters and alert
episodes. A kind supplies the rest through :class:`KindPipeline`:

1. ``record`` — the msgspec Struct one JSON record decodes into (unknown fields are kept by
   the decoder and handed over as ``extras``);
2. ``to_batch`` — decoded rows → a column batch (numpy arrays, one element per record);
3. ``check`` — vectorized plausibility checks → (ok, reason, detail) per row;
4. ``commit`` — inside the batch's transaction: store idempotently, run detection on the rows
   that were new, return an :class:`Outcome` with the exceedances;
5. ``committed`` — after the commit: advance in-memory state (never before: a rolled-back
   batch is retried and must not count twice);
6. ``idle`` — called about once a second inside a transaction of its own: judge what is due
   without new input (a drive pass whose vehicle went quiet); its outcome is ``committed``
   too;
7. ``refresh`` — reload reference data (road segments, thresholds, incidents) periodically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

from telemetry.detect.exceedance import Exceedance
from telemetry.ingest.decode import KindRows
from telemetry.ingest.validate import Limits
from telemetry.kinds import Kind

__all__ = ["CheckResult", "KindPipeline", "Outcome", "Timestamp", "ts_us"]

#: A record's measurement time: RFC 3339 with a UTC offset, or epoch milliseconds (an int).
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = datetime.resolution  # one microsecond


def ts_us(ts: datetime | int) -> int:
    """Epoch microseconds of a :data:`Timestamp` (an RFC 3339 time or epoch milliseconds)."""
    if isinstance(ts, int):
        return ts * 1000
    return (ts - _EPOCH) // _US


CheckResult = tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_], npt.NDArray[np.object_]]


@dataclass(slots=True)
class Outcome:
    """What one kind's part of a batch did inside the transaction."""

    accepted: int
    stored: int
    exceedances: list[Exceedance] = field(default_factory=list)
    state: Any = None  # handed back to ``committed``


class KindPipeline(Protocol):
    kind: Kind
    record: type[msgspec.Struct]

    def to_batch(self, rows: KindRows) -> Any: ...

    def check(self, batch: Any, *, now_us: int, limits: Limits) -> CheckResult: ...

    async def commit(self, conn: asyncpg.Connection, batch: Any, *, now_us: int) -> Outcome: ...

    def committed(self, outcome: Outcome) -> None: ...

    async def idle(self, conn: asyncpg.Connection, *, now_us: int) -> Outcome: ...

    async def refresh(self, pool: asyncpg.Pool) -> None: ...
