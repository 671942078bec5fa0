"""``GET /api/v1/events``: alert transitions as server-sent events, over real HTTP (uvicorn in
a thread) against a real database, resumed with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from conftest import free_port
from support import bearer, grant_token
from test_api_alerts import insert_alert

from api.app import create_app
from api.routers.events import RedactAccessToken
from telemetry.alerts.repository import list_alert_events
from telemetry.settings import Settings

#: A safety net so that a broken stream fails the test instead of hanging the suite; no
#: assertion depends on timing.
HANG_S = 60


@pytest.fixture
def server(database_url: str) -> Iterator[tuple[str, uvicorn.Server]]:
    app = create_app(Settings(database_url=database_url, ingest_enabled=False))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    app.state.resources.stopping = lambda: srv.should_exit
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", srv
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop with a stream open"


async def sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The events of a text/event-stream response, each as its fields (``data`` decoded);
    comments and the ``retry`` message are skipped."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def take(events: AsyncIterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(HANG_S):
        return [await anext(events) for _ in range(n)]


async def test_transitions_stream_and_resume_after_last_event_id(
    server: tuple[str, uvicorn.Server], database_url: str, pool: asyncpg.Pool
) -> None:
    url, _ = server
    viewer = await grant_token(database_url, "viewer")
    officer = bearer(await grant_token(database_url, "officer"))
    async with httpx.AsyncClient(base_url=url, timeout=HANG_S) as http:
        params = {"access_token": viewer}
        async with http.stream("GET", "/api/v1/events", params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse(response)

            alert_id = await insert_alert(pool, severity="warning")
            ack = await http.post(f"/api/v1/alerts/{alert_id}/ack", headers=officer)
            assert ack.status_code == 200, ack.text
            # More occurrences of an open alert are no transition: no event.
            await pool.execute(
                "UPDATE alerts SET occurrences = occurrences + 5, last_value = 99 WHERE id = $1",
                alert_id,
            )
            await pool.execute("UPDATE alerts SET severity = 'critical' WHERE id = $1", alert_id)
            resolved = await http.post(f"/api/v1/alerts/{alert_id}/resolve", headers=officer)
            assert resolved.status_code == 200, resolved.text

            got = await take(events, 4)

    assert [e["data"]["type"] for e in got] == ["opened", "acknowledged", "escalated", "resolved"]
    assert all(e["event"] == "alert" and e["data"]["alert_id"] == alert_id for e in got)
    ids = [int(e["id"]) for e in got]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [e["data"]["id"] for e in got] == ids
    assert got[2]["data"]["severity"] == "critical"
    assert got[3]["data"]["status"] == "resolved"

    # Reconnect as the browser does, with the header this time: only the later events.
    async with (
        httpx.AsyncClient(base_url=url, timeout=HANG_S) as http,
        http.stream(
            "GET",
            "/api/v1/events",
            headers=bearer(viewer) | {"Last-Event-ID": str(ids[1])},
        ) as response,
    ):
        assert response.status_code == 200
        events = sse(response)
        again = await take(events, 2)
        later = await insert_alert(pool)
        [opened] = await take(events, 1)
    assert [int(e["id"]) for e in again] == ids[2:]
    assert opened["data"]["alert_id"] == later and int(opened["id"]) > ids[-1]


async def test_stream_ends_when_the_server_stops(
    server: tuple[str, uvicorn.Server], database_url: str
) -> None:
    url, srv = server
    token = await grant_token(database_url, "viewer")
    async with (
        httpx.AsyncClient(base_url=url, timeout=HANG_S) as http,
        http.stream("GET", "/api/v1/events", params={"access_token": token}) as response,
    ):
        assert response.status_code == 200
        srv.should_exit = True
        async with asyncio.timeout(HANG_S):
            async for _ in response.aiter_lines():
                pass  # ends: the server closed the stream


async def test_stream_needs_a_valid_token(server: tuple[str, uvicorn.Server]) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url, timeout=HANG_S) as http:
        assert (await http.get("/api/v1/events")).status_code == 401
        bad = await http.get("/api/v1/events", params={"access_token": "nope"})
        assert bad.status_code == 401
        assert bad.json()["error"] == "unauthorized"
        # The query token is this route's alone.
        assert (await http.get("/api/v1/alerts", params={"access_token": "x"})).status_code in (
            401,
            422,
        )


async def test_bad_last_event_id_is_422(
    server: tuple[str, uvicorn.Server], database_url: str
) -> None:
    url, _ = server
    token = await grant_token(database_url, "viewer")
    async with httpx.AsyncClient(base_url=url, timeout=HANG_S) as http:
        response = await http.get(
            "/api/v1/events", headers=bearer(token) | {"Last-Event-ID": "12abc"}
        )
    assert response.status_code == 422


async def roll_back(pool: asyncpg.Pool, sql: str) -> None:
    """Run ``sql`` in a transaction that is rolled back."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(sql)
        await transaction.rollback()


async def test_every_transition_is_recorded_once(pool: asyncpg.Pool) -> None:
    suspected = await insert_alert(pool, confidence="suspected", severity="info")
    await pool.execute("UPDATE alerts SET occurrences = 9 WHERE id = $1", suspected)
    await pool.execute("UPDATE alerts SET severity = 'warning' WHERE id = $1", suspected)
    await pool.execute("UPDATE alerts SET severity = 'info' WHERE id = $1", suspected)  # no
    await pool.execute("UPDATE alerts SET confidence = 'confirmed' WHERE id = $1", suspected)
    await pool.execute("UPDATE alerts SET stale_since = now() WHERE id = $1", suspected)
    await pool.execute("UPDATE alerts SET stale_since = now() WHERE id = $1", suspected)  # no
    await pool.execute(
        "UPDATE alerts SET status = 'resolved', resolution = 'quiet' WHERE id = $1", suspected
    )
    before = await list_alert_events(pool)
    await roll_back(pool, "UPDATE alerts SET status = 'open', severity = 'critical'")
    assert await list_alert_events(pool) == before

    rows = [r for r in await list_alert_events(pool) if r["alert_id"] == suspected]
    assert [r["type"] for r in rows] == ["opened", "escalated", "confirmed", "stale", "resolved"]


def test_access_token_is_redacted_from_the_access_log() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/v1/events?access_token=s3cret&x=1", "1.1", 200),
        None,
    )
    assert RedactAccessToken().filter(record)
    assert "s3cret" not in record.getMessage()
    assert "access_token=***&x=1" in record.getMessage()
