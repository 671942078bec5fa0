"""``/api/v1/alerts``: list, read, acknowledge and resolve alert episodes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.schemas import Alert, AlertAction, AlertPage, AlertQuery
from telemetry.alerts import repository as store
from telemetry.errors import ValidationError
from telemetry.web import (
    BigintId,
    OfficerDep,
    PoolDep,
    cursor_id,
    decode_cursor,
    encode_cursor,
    error_responses,
)

__all__ = ["router"]

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("", response_model=AlertPage)
async def list_alerts(pool: PoolDep, query: Annotated[AlertQuery, Query()]) -> AlertPage:
    """Alerts newest first (or most severe first with ``order=severity``), filtered; follow
    ``next_cursor`` for the next page. Each alert names its street and a point to map it."""
    by_severity = query.order == "severity"
    before_rank, before_id = (
        _decode_cursor(query.cursor, by_severity) if query.cursor is not None else (None, None)
    )
    rows = await store.list_alerts(
        pool,
        statuses=query.status,
        kind=query.kind,
        pollutant=query.pollutant,
        vehicle_id=query.vehicle,
        segment_id=query.segment,
        since=query.since,
        until=query.until,
        before_id=before_id,
        limit=query.limit + 1,
        confidence=query.confidence,
        stale=query.stale,
        resolution=query.resolution,
        rule=query.rule,
        severities=query.severity,
        by_severity=by_severity,
        before_rank=before_rank,
    )
    items = [Alert.model_validate(r) for r in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        next_cursor = (
            encode_cursor("alerts-severity", str(store.severity_rank(last.severity)), str(last.id))
            if by_severity
            else encode_cursor("alerts", str(last.id))
        )
    return AlertPage(items=items, next_cursor=next_cursor)


@router.get("/{alert_id}", response_model=Alert, responses=error_responses(404))
async def get_alert(pool: PoolDep, alert_id: BigintId) -> Alert:
    """One alert."""
    return Alert.model_validate(await store.get_alert(pool, alert_id))


@router.post("/{alert_id}/ack", response_model=Alert, responses=error_responses(400, 403, 404, 409))
async def acknowledge_alert(
    pool: PoolDep, principal: OfficerDep, alert_id: BigintId, action: AlertAction | None = None
) -> Alert:
    """Acknowledge an open alert as the token's account (officer or admin); 404 if there is
    none, 409 if it is already acknowledged or resolved. The body is optional."""
    note = action.note if action is not None else None
    row = await store.acknowledge_alert(pool, alert_id, by=principal, note=note)
    return Alert.model_validate(row)


@router.post(
    "/{alert_id}/resolve",
    response_model=Alert,
    responses=error_responses(400, 403, 404, 409, 422),
)
async def resolve_alert(
    pool: PoolDep, principal: OfficerDep, alert_id: BigintId, action: AlertAction | None = None
) -> Alert:
    """Resolve an open or acknowledged alert as the token's account (officer or admin); 404
    if there is none, 409 if it is already resolved, 422 for a high-emitter alert without a
    note. The body is otherwise optional."""
    note = action.note if action is not None else None
    row = await store.resolve_alert(pool, alert_id, by=principal, note=note)
    return Alert.model_validate(row)


def _decode_cursor(cursor: str, by_severity: bool) -> tuple[int | None, int]:
    if not by_severity:
        [value] = decode_cursor("alerts", cursor, 1)
        return None, cursor_id(cursor, value)
    rank, value = decode_cursor("alerts-severity", cursor, 2)
    if rank not in {"0", "1", "2", "3"}:
        raise ValidationError(f"invalid cursor {cursor!r}")
    return int(rank), cursor_id(cursor, value)
