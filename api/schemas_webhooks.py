"""Request, query and response models of ``/api/v1/webhooks`` (docs/webhooks.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from telemetry.kinds.contract import Kind
from telemetry.web import BodyModel, QueryModel, Text

__all__ = [
    "Delivery",
    "DeliveryPage",
    "DeliveryQuery",
    "DeliveryStatus",
    "Webhook",
    "WebhookCreate",
    "WebhookCreated",
]

EventType = Literal["opened", "escalated", "acknowledged", "confirmed", "stale", "resolved"]
Severity = Literal["info", "warning", "critical"]
DeliveryStatus = Literal["pending", "delivered", "failed"]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials; the signature authenticates the sender")
    return value


Url = Annotated[
    Text,
    StringConstraints(strip_whitespace=True, min_length=8, max_length=2000),
    AfterValidator(_http_url),
]
Secret = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{16,200}$")]


class WebhookCreate(BodyModel):
    """A notification target. A filter left out (or null) lets every value through; a list
    lets through the events matching one of its values."""

    url: Url = Field(description="http:// or https://; receives a POST per matching event")
    secret: Secret | None = Field(
        None,
        description="the signing secret, 16 to 200 printable ASCII characters; left out, one "
        "is generated. Answered once, here; never again",
    )
    description: Annotated[Text, StringConstraints(max_length=200)] | None = None
    kinds: list[Kind] | None = Field(None, min_length=1, description="vehicle kinds")
    severities: list[Severity] | None = Field(None, min_length=1)
    event_types: list[EventType] | None = Field(
        None, min_length=1, description="alert transitions, e.g. ['opened', 'escalated']"
    )


class Webhook(BaseModel):
    """A target and how its deliveries go. ``state`` is ``failing`` once its last
    ``TELEMETRY_WEBHOOK_FAILING_AFTER`` attempts in a row failed, until one succeeds."""

    id: int
    url: str
    description: str | None
    kinds: list[str] | None
    severities: list[str] | None
    event_types: list[str] | None
    created_at: datetime
    created_by: str
    state: Literal["ok", "failing"]
    consecutive_failures: int = Field(description="failed attempts in a row")
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None = Field(description="of the last failed attempt")
    pending: int = Field(description="deliveries still to be made (or retried)")
    failed: int = Field(description="deliveries given up")


class WebhookCreated(Webhook):
    secret: str = Field(description="the signing secret; shown this once")


class DeliveryQuery(QueryModel):
    status: DeliveryStatus | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: Annotated[Text, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="the previous page's next_cursor"
    )


class Delivery(BaseModel):
    """One event for one target: ``pending`` (to be tried at ``next_attempt_at``),
    ``delivered`` or ``failed`` (given up)."""

    id: int
    event_id: int = Field(description="the alert event (the stream's event id)")
    alert_id: int | None
    type: str | None = Field(description="the transition")
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="while pending")
    last_attempt_at: datetime | None
    last_status: int | None = Field(description="the receiver's HTTP status, if it answered")
    last_error: str | None
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )
