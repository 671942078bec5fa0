"""``/api/v1/dead-letters``: rejected telemetry with the reason, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.schemas import DeadLetter, DeadLetterPage, DeadLetterQuery
from telemetry.store.deadletter import list_dead_letters
from telemetry.web import PoolDep

__all__ = ["router"]

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])


@router.get("", response_model=DeadLetterPage)
async def get_dead_letters(
    pool: PoolDep, query: Annotated[DeadLetterQuery, Query()]
) -> DeadLetterPage:
    """Dead letters newest first; follow ``next_before_id`` for older ones."""
    rows = await list_dead_letters(
        pool,
        reason=query.reason,
        kind=query.kind,
        before_id=query.before_id,
        limit=query.limit + 1,
    )
    items = [DeadLetter.model_validate(r) for r in rows[: query.limit]]
    next_before_id = items[-1].id if len(rows) > query.limit else None
    return DeadLetterPage(items=items, next_before_id=next_before_id)
