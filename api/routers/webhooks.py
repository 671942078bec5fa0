"""``/api/v1/webhooks``: notification targets for other systems (admins only).

Every alert state transition matching a target's filters is POSTed to it, signed, and retried
with back-off until delivered or given up (docs/webhooks.md); its deliveries show how that
went.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from api.schemas_webhooks import (
    Delivery,
    DeliveryPage,
    DeliveryQuery,
    Webhook,
    WebhookCreate,
    WebhookCreated,
)
from telemetry.alerts.webhooks import generate_secret
from telemetry.store import webhooks as store
from telemetry.web import (
    AdminDep,
    BigintId,
    PoolDep,
    SettingsDep,
    cursor_id,
    decode_cursor,
    encode_cursor,
    error_responses,
)

__all__ = ["router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _webhook(row: dict[str, Any], failing_after: int) -> dict[str, Any]:
    state = "failing" if row["consecutive_failures"] >= failing_after else "ok"
    return {**row, "state": state}


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403),
)
async def add_webhook(
    pool: PoolDep, settings: SettingsDep, principal: AdminDep, body: WebhookCreate
) -> WebhookCreated:
    """Add a target; its signing ``secret`` (the one given, or a generated one) is answered
    this once. It receives the transitions that happen from now on."""
    secret = body.secret or generate_secret()
    row = await store.insert_webhook(
        pool,
        principal,
        url=body.url,
        secret=secret,
        description=body.description,
        kinds=body.kinds,
        severities=body.severities,
        event_types=body.event_types,
    )
    return WebhookCreated.model_validate(
        {**_webhook(row, settings.webhook_failing_after), "secret": secret}
    )


@router.get("", response_model=list[Webhook], responses=error_responses(403))
async def list_webhooks(pool: PoolDep, settings: SettingsDep, principal: AdminDep) -> list[Webhook]:
    """Every target by id (without secrets), with its state (``ok`` or ``failing``), its last
    error and its counts of pending and failed deliveries."""
    rows = await store.list_webhooks(pool)
    return [Webhook.model_validate(_webhook(r, settings.webhook_failing_after)) for r in rows]


@router.get("/{webhook_id}", response_model=Webhook, responses=error_responses(403, 404))
async def get_webhook(
    pool: PoolDep, settings: SettingsDep, principal: AdminDep, webhook_id: BigintId
) -> Webhook:
    """One target (without its secret)."""
    row = await store.get_webhook(pool, webhook_id)
    return Webhook.model_validate(_webhook(row, settings.webhook_failing_after))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(403, 404),
)
async def delete_webhook(pool: PoolDep, principal: AdminDep, webhook_id: BigintId) -> Response:
    """Remove a target and its deliveries; nothing more is sent to it."""
    await store.delete_webhook(pool, principal, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    responses=error_responses(403, 404),
)
async def list_deliveries(
    pool: PoolDep,
    principal: AdminDep,
    webhook_id: BigintId,
    query: Annotated[DeliveryQuery, Query()],
) -> DeliveryPage:
    """A target's deliveries newest first: status, attempts, the last answer or error, and
    when the next attempt is due; follow ``next_cursor`` for older ones."""
    before_id = None
    if query.cursor is not None:
        [value] = decode_cursor("deliveries", query.cursor, 1)
        before_id = cursor_id(query.cursor, value)
    rows = await store.list_deliveries(
        pool, webhook_id, status=query.status, before_id=before_id, limit=query.limit + 1
    )
    items = [
        Delivery.model_validate(
            {**r, "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None}
        )
        for r in rows[: query.limit]
    ]
    next_cursor = (
        encode_cursor("deliveries", str(items[-1].id)) if len(rows) > query.limit else None
    )
    return DeliveryPage(items=items, next_cursor=next_cursor)
