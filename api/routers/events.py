"""``GET /api/v1/events``: a server-sent-events stream of alert state transitions and
live vehicle positions.

**Alerts.** Each ``alert`` event is one transition of one alert (``opened``, ``escalated``,
``acknowledged``, ``confirmed``, ``stale``, ``resolved``), never one per occurrence while an
alert stays open. Its SSE id is the ``alert_events`` row id, increasing; a client that
reconnects with ``Last-Event-ID`` gets exactly the events after that id. Without it the stream
starts with the next transition.

**Positions.** Unless the client asks ``?positions=false`` (or ``0``), the stream also carries
``positions`` events: ``{"positions": [{vehicle_id, kind, lat, lon, ts}, …]}``, one event per
tick (``TELEMETRY_EVENTS_POSITIONS_INTERVAL_S``, 1 s by default) holding every live vehicle
(heard from within ``TELEMETRY_VEHICLE_ONLINE_S``) whose position changed since the last
tick, each vehicle at most once; the first one after connecting holds every live vehicle.
Positions are ephemeral: they carry no SSE id (so the browser's last event id stays that of
the last alert event) and are not replayed on reconnection; the next tick brings the vehicles
that move. ``ts`` is the measurement time of the position. A client that falls behind gets
the positions of the ticks it missed merged, the newest per vehicle.

Why polling rather than LISTEN/NOTIFY: ingest updates table ``vehicles`` once per batch, for
every vehicle in it, and with 2,000 vehicles at 1 Hz a notification per update would be
thousands a second, each one to decode in every API process. Instead one task per API process
(:class:`PositionHub`, running while at least one stream wants positions) reads the live
vehicles once per tick, by the index on ``last_received_at``, keeps the last position it sent
of each, and hands the changed ones, serialized once, to every stream: one query per tick
whatever the number of clients, and a bounded amount of work per client (its pending
positions are at most one per vehicle).

A browser's ``EventSource`` cannot send headers, so this route alone also accepts the token
as ``?access_token=``; the access log shows that parameter redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import Resources, ResourcesDep
from telemetry import metrics
from telemetry.accounts.model import Principal
from telemetry.accounts.service import principal_for_token
from telemetry.alerts import repository as store
from telemetry.errors import UnauthorizedError, ValidationError
from telemetry.store.positions import live_positions
from telemetry.web import BIGINT_MAX, TOKEN_URL, PoolDep, error_responses

__all__ = ["PositionHub", "RedactAccessToken", "router"]

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
#: msgspec encodes a tick of 2,000 positions in about 2 ms (json: about 30); datetimes as
#: RFC 3339, UTC as Z.
_ENCODE = msgspec.json.Encoder().encode
#: Position batches a stream may hold before they are merged into one (the newest position
#: per vehicle), so that a slow client costs memory bounded by the number of vehicles.
MAX_PENDING = 4

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
            "description": "an endless text/event-stream of `event: alert` messages (with an "
            "`id`) whose `data` is a JSON object: id, alert_id, type, at, kind, pollutant, "
            "rule, severity, status, segment_id; and, unless `positions=false`, `event: "
            "positions` messages (without an id, not replayed) whose `data` is "
            '`{"positions": [{vehicle_id, kind, lat, lon, ts}, ...]}`, the live vehicles '
            "whose position changed since the last tick",
        },
        **error_responses(401, 422, 503),
    },
    # The bearer scheme every route declares; the token is checked by _viewer, which also
    # takes it from the query.
    openapi_extra={"security": [{"bearer": []}]},
)
async def events(
    request: Request,
    pool: PoolDep,
    resources: ResourcesDep,
    principal: Annotated[Principal, Depends(_viewer)],
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="resume after this event id"),
    ] = None,
    positions: Annotated[
        bool,
        Query(description="also stream live vehicle positions (`positions` events)"),
    ] = True,
) -> StreamingResponse:
    """Alert state transitions as server-sent events, resumable with ``Last-Event-ID``, and
    (unless ``positions=false``) live vehicle positions, at most one per vehicle per tick,
    not resumable. Needs a viewer token: ``Authorization: Bearer``, or ``?access_token=`` on
    this route only (a browser ``EventSource`` cannot send headers)."""
    if last_event_id is None or not last_event_id.strip():
        after = await store.last_alert_event_id(pool)
    else:
        after = _event_id(last_event_id)
    log.info("event stream opened by %s after event %d", principal.name, after)
    hub = _hub(request.app, resources) if positions else None
    return StreamingResponse(
        _stream(resources, after, hub),
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


async def _stream(resources: Resources, after: int, hub: PositionHub | None) -> AsyncIterator[str]:
    # Starlette cancels this generator when the client disconnects; the server shutting
    # down (``stopping``) or the pool closing ends it here.
    subscriber = hub.subscribe() if hub is not None else None
    metrics.EVENT_STREAMS.inc()
    try:
        yield f"retry: {RETRY_MS}\n\n"
        written = next_poll = time.monotonic()
        while not _closing(resources):
            if time.monotonic() >= next_poll:
                pool = resources.pool
                assert pool is not None
                try:
                    rows = await store.list_alert_events(pool, after_id=after, limit=BATCH)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning(
                        "event stream: %s: %s; the client will reconnect", type(exc).__name__, exc
                    )
                    return
                for row in rows:
                    after = row["id"]
                    yield _message(row)
                if len(rows) == BATCH:
                    continue
                next_poll = time.monotonic() + POLL_S
                if rows:
                    written = time.monotonic()
            if subscriber is not None and (batch := subscriber.take()) is not None:
                yield batch
                written = time.monotonic()
            wait_s = max(0.0, next_poll - time.monotonic())
            if subscriber is not None:
                await subscriber.wait(wait_s)
            else:
                await asyncio.sleep(wait_s)
            if time.monotonic() - written >= KEEPALIVE_S:
                written = time.monotonic()
                yield ": keep-alive\n\n"
    finally:
        metrics.EVENT_STREAMS.dec()
        if hub is not None and subscriber is not None:
            hub.unsubscribe(subscriber)


def _message(row: dict[str, Any]) -> str:
    data = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
    return f"id: {row['id']}\nevent: alert\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


# --- live positions ----------------------------------------------------------------------------


def _positions_message(positions: Iterable[dict[str, Any]]) -> str:
    """One ``positions`` event, without an id: positions are not resumable."""
    data = _ENCODE({"positions": list(positions)}).decode()
    return f"event: positions\ndata: {data}\n\n"


@dataclass(frozen=True, slots=True)
class _Batch:
    """One tick's changed positions by vehicle id, and their event, serialized once."""

    positions: dict[str, dict[str, Any]]
    text: str


class _Subscriber:
    """The position batches one stream has yet to write."""

    def __init__(self) -> None:
        self._pending: list[_Batch] = []
        self._ready = asyncio.Event()

    def offer(self, batch: _Batch) -> None:
        self._pending.append(batch)
        if len(self._pending) > MAX_PENDING:
            self._pending = [_merge(self._pending)]
        self._ready.set()

    def take(self) -> str | None:
        """The event to write (the pending batches merged), or None."""
        self._ready.clear()
        if not self._pending:
            return None
        text = self._pending[0].text if len(self._pending) == 1 else _merge(self._pending).text
        self._pending = []
        return text

    async def wait(self, timeout_s: float) -> None:
        """Until a batch is offered, or ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            pass


def _merge(batches: list[_Batch]) -> _Batch:
    merged: dict[str, dict[str, Any]] = {}
    for batch in batches:
        merged.update(batch.positions)
    return _Batch(merged, _positions_message(merged.values()))


class PositionHub:
    """Reads live vehicles' positions once per tick and hands the changed ones to every
    subscribed stream of this process (see the module's docstring for why it polls).

    The task runs while at least one stream is subscribed; a new subscriber first gets every
    live vehicle's last position.
    """

    def __init__(
        self, pool_of: Callable[[], asyncpg.Pool | None], *, interval_s: float, online_s: float
    ) -> None:
        self._pool_of = pool_of
        self._interval_s = interval_s
        self._online_s = online_s
        self._subscribers: set[_Subscriber] = set()
        self._sent: dict[str, dict[str, Any]] = {}  # the last position sent, by vehicle
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> _Subscriber:
        subscriber = _Subscriber()
        if self._sent:
            subscriber.offer(_Batch(dict(self._sent), _positions_message(self._sent.values())))
        self._subscribers.add(subscriber)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="position-hub")
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            self._task = None
            self._sent = {}

    async def _run(self) -> None:
        while True:
            pool = self._pool_of()
            if pool is not None:
                try:
                    self.publish(await live_positions(pool, online_s=self._online_s))
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("positions: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self._interval_s)

    def publish(self, rows: Sequence[Mapping[str, Any] | asyncpg.Record]) -> None:
        """Hand the positions in ``rows`` whose coordinates differ from the last sent to every
        subscriber (a vehicle standing still sends nothing more); vehicles missing from
        ``rows`` (no longer live) are forgotten, and sent again when they come back."""
        changed: dict[str, dict[str, Any]] = {}
        live: dict[str, dict[str, Any]] = {}
        sent = self._sent
        for row in rows:
            vehicle_id = row["vehicle_id"]
            position = sent.get(vehicle_id)
            if position is None or position["lat"] != row["lat"] or position["lon"] != row["lon"]:
                # (an unmoved vehicle keeps the ts of the position as first sent)
                position = changed[vehicle_id] = {
                    "vehicle_id": vehicle_id,
                    "kind": row["kind"],
                    "lat": row["lat"],
                    "lon": row["lon"],
                    "ts": row["ts"],
                }
            live[vehicle_id] = position
        self._sent = live
        if not changed:
            return
        metrics.STREAM_POSITIONS.inc(len(changed))
        batch = _Batch(changed, _positions_message(changed.values()))
        for subscriber in self._subscribers:
            subscriber.offer(batch)


def _hub(app: FastAPI, resources: Resources) -> PositionHub:
    """The app's position hub, made on the first stream that wants positions."""
    hub: PositionHub | None = getattr(app.state, "position_hub", None)
    if hub is None:
        settings = resources.settings
        hub = PositionHub(
            lambda: resources.pool,
            interval_s=settings.events_positions_interval_s,
            online_s=settings.vehicle_online_s,
        )
        app.state.position_hub = hub
    return hub
