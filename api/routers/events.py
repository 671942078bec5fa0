"""``GET /api/v1/events``: a server-sent-events stream of alert state transitions.

Each event is one transition of one alert (``opened``, ``escalated``, ``acknowledged``,
``confirmed``, ``stale``, ``resolved``), never one per occurrence while an alert stays open.
Its SSE id is the ``alert_events`` row id, increasing; a client that reconnects with
``Last-Event-ID`` gets exactly the events after that id. Without it the stream starts with the
next transition.

A browser's ``EventSource`` cannot send headers, so this route alone also accepts the token
as ``?access_token=``; the access log shows that parameter redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import Resources, ResourcesDep
from telemetry.accounts.model import Principal
from telemetry.accounts.service import principal_for_token
from telemetry.alerts import repository as store
from telemetry.errors import UnauthorizedError, ValidationError
from telemetry.web import BIGINT_MAX, TOKEN_URL, PoolDep, error_responses

__all__ = ["RedactAccessToken", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"])

#: How often the stream looks for new events, in seconds.
POLL_S = 1.0
#: A comment line after this many seconds without events keeps proxies from closing the stream
#: and lets the server notice a client that has gone.
KEEPALIVE_S = 15.0
#: Events read per query.
BATCH = 200
#: What the client waits before reconnecting, in milliseconds (the SSE ``retry`` field).
RETRY_MS = 3000

_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s]*")


class RedactAccessToken(logging.Filter):
    """Replaces the value of ``access_token=`` in a log record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


# uvicorn's access log writes the request line, query string included.
logging.getLogger("uvicorn.access").addFilter(RedactAccessToken())


async def _viewer(
    request: Request,
    pool: PoolDep,
    access_token: Annotated[
        str | None,
        Query(
            max_length=200,
            description="the bearer token, for clients that cannot send headers (EventSource);"
            " only this route accepts it",
        ),
    ] = None,
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else None
    token = token or access_token
    if not token:
        raise UnauthorizedError(f"this request needs a bearer token; log in at {TOKEN_URL}")
    # Every role may read (viewer is the lowest); a live token is enough.
    return await principal_for_token(pool, token)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "an endless text/event-stream of `event: alert` messages whose "
            "`data` is a JSON object: id, alert_id, type, at, kind, pollutant, rule, severity, "
            "status, segment_id",
        },
        **error_responses(401, 422, 503),
    },
    # The bearer scheme every route declares; the token is checked by _viewer, which also
    # takes it from the query.
    openapi_extra={"security": [{"bearer": []}]},
)
async def events(
    pool: PoolDep,
    resources: ResourcesDep,
    principal: Annotated[Principal, Depends(_viewer)],
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="resume after this event id"),
    ] = None,
) -> StreamingResponse:
    """Alert state transitions as server-sent events, resumable with ``Last-Event-ID``.
    Needs a viewer token: ``Authorization: Bearer``, or ``?access_token=`` on this route only
    (a browser ``EventSource`` cannot send headers)."""
    if last_event_id is None or not last_event_id.strip():
        after = await store.last_alert_event_id(pool)
    else:
        after = _event_id(last_event_id)
    log.info("event stream opened by %s after event %d", principal.name, after)
    return StreamingResponse(
        _stream(resources, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event_id(value: str) -> int:
    value = value.strip()
    if not value.isdigit() or int(value) > BIGINT_MAX:
        raise ValidationError(f"invalid Last-Event-ID {value[:40]!r}")
    return int(value)


def _closing(resources: Resources) -> bool:
    return resources.pool is None or (resources.stopping is not None and resources.stopping())


async def _stream(resources: Resources, after: int) -> AsyncIterator[str]:
    # Starlette cancels this generator when the client disconnects; the server shutting
    # down (``stopping``) or the pool closing ends it here.
    yield f"retry: {RETRY_MS}\n\n"
    quiet = 0.0
    while not _closing(resources):
        pool = resources.pool
        assert pool is not None
        try:
            rows = await store.list_alert_events(pool, after_id=after, limit=BATCH)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("event stream: %s: %s; the client will reconnect", type(exc).__name__, exc)
            return
        for row in rows:
            after = row["id"]
            yield _message(row)
        if len(rows) == BATCH:
            continue
        if rows:
            quiet = 0.0
        await asyncio.sleep(POLL_S)
        quiet += POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"


def _message(row: dict[str, Any]) -> str:
    data = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
    return f"id: {row['id']}\nevent: alert\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
