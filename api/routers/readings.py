"""``/api/v1/readings``: what vehicles sent beyond the contract's fields, as series. Portable
instruments (哨兵) send channels of their own; they are kept with each reading (``extra``)
and read back here with the unit the vehicle declared (docs/domain.md §5.6)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.schemas import ExtraPoint, ExtraSeries, ExtraSeriesQuery
from telemetry.errors import ValidationError
from telemetry.kinds.walkthrough.repository import extra_series
from telemetry.store.declared_units import load_vehicle_units
from telemetry.web import PoolDep, cursor_time, decode_cursor, encode_cursor

__all__ = ["router"]

router = APIRouter(prefix="/readings", tags=["readings"])

_LISTING = "extra"


@router.get("/extra", response_model=ExtraSeries)
async def get_extra_series(
    pool: PoolDep, query: Annotated[ExtraSeriesQuery, Query()]
) -> ExtraSeries:
    """One walk-through vehicle's extra channel (a field beyond the contract's, kept as
    sent) over a window, oldest first: the readings that carry it, with their time,
    position and value, and the unit the vehicle declared for the channel at registration
    (``telemetry vehicles register --unit CHANNEL=UNIT``; null if none). Follow
    ``next_cursor``."""
    try:
        since, until = query.resolved(datetime.now(UTC))
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    after = None
    if query.cursor is not None:
        [value] = decode_cursor(_LISTING, query.cursor, 1)
        after = cursor_time(query.cursor, value)
    rows = await extra_series(
        pool, query.vehicle_id, query.channel, since=since, until=until, after=after,
        limit=query.limit + 1,
    )  # fmt: skip
    items = [ExtraPoint.model_validate(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    declared = await load_vehicle_units(pool, query.vehicle_id)
    return ExtraSeries(
        vehicle_id=query.vehicle_id,
        channel=query.channel,
        unit=declared.get(query.vehicle_id, {}).get(query.channel),
        since=since,
        until=until,
        items=items,
        next_cursor=encode_cursor(_LISTING, items[-1].ts.isoformat()) if more else None,
    )
