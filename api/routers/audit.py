"""``/api/v1/audit``: every change, who made it and the entity before and after (admins
only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.schemas import AuditEntry, AuditPage, AuditQuery
from telemetry.store import audit
from telemetry.web import (
    AdminDep,
    PoolDep,
    cursor_id,
    decode_cursor,
    encode_cursor,
    error_responses,
)

__all__ = ["router"]

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPage, responses=error_responses(403))
async def list_changes(
    pool: PoolDep, principal: AdminDep, query: Annotated[AuditQuery, Query()]
) -> AuditPage:
    """Changes newest first, filtered by ``account``, ``entity`` (and ``entity_id``),
    ``action`` and the window ``[since, until)``; follow ``next_cursor`` for older ones."""
    before_id = None
    if query.cursor is not None:
        [value] = decode_cursor("audit", query.cursor, 1)
        before_id = cursor_id(query.cursor, value)
    rows = await audit.list_changes(
        pool,
        account=query.account,
        entity=query.entity,
        entity_id=query.entity_id,
        action=query.action,
        since=query.since,
        until=query.until,
        before_id=before_id,
        limit=query.limit + 1,
    )
    items = [AuditEntry.model_validate(r) for r in rows[: query.limit]]
    next_cursor = encode_cursor("audit", str(items[-1].id)) if len(rows) > query.limit else None
    return AuditPage(items=items, next_cursor=next_cursor)
