"""``GET /api/v1/events``: alert transitions as server-sent events, over real HTTP (uvicorn in
a thread) against a real database, resumed with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from conftest import free_port
from support import bearer, grant_token, publish
from test_api_alerts import insert_alert

from api.app import create_app
from api.routers.events import PositionHub, RedactAccessToken
from telemetry.alerts.repository import list_alert_events
from telemetry.settings import Settings

#: A safety net so that a broken stream fails the test instead of hanging the suite; no
#: assertion depends on timing.
HANG_S = 60


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[str, uvicorn.Server]]:
    """The app for ``settings`` served by uvicorn in a thread on a free port."""
    app = create_app(settings)
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


@pytest.fixture
def server(database_url: str) -> Iterator[tuple[str, uvicorn.Server]]:
    with serving(Settings(database_url=database_url, ingest_enabled=False)) as served:
        yield served


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


async def take_until(
    events: AsyncIterator[dict[str, Any]], done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Events until ``done`` holds for those read so far."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(HANG_S):
        while not done(got):
            got.append(await anext(events))
    return got


def positions_of(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last position of each vehicle in the ``positions`` events among ``events``."""
    return {
        p["vehicle_id"]: p
        for e in events
        if e.get("event") == "positions"
        for p in e["data"]["positions"]
    }


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


@pytest.fixture
def ingest_server(database_url: str, broker: Any) -> Iterator[tuple[str, uvicorn.Server]]:
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"events-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        events_positions_interval_s=0.2,
    )
    with serving(settings) as served:
        yield served


def _reading(lat: float, lon: float) -> str:
    ts = datetime.now(UTC).isoformat()
    return json.dumps({"ts": ts, "lat": lat, "lon": lon, "pm25": 12.0})


async def test_positions_of_vehicles_publishing_through_the_broker_are_streamed(
    ingest_server: tuple[str, uvicorn.Server],
    database_url: str,
    pool: asyncpg.Pool,
    broker: Any,
) -> None:
    url, _ = ingest_server
    viewer = await grant_token(database_url, "viewer")
    a, b = f"pos-a-{uuid.uuid4().hex[:6]}", f"pos-b-{uuid.uuid4().hex[:6]}"
    async with (
        httpx.AsyncClient(base_url=url, timeout=HANG_S) as http,
        http.stream("GET", "/api/v1/events", params={"access_token": viewer}) as response,
    ):
        assert response.status_code == 200
        events = sse(response)
        publish(broker, f"telemetry/walkthrough/{a}", [_reading(39.91, 116.41)])
        publish(broker, f"telemetry/walkthrough/{b}", [_reading(39.92, 116.42)])
        first = await take_until(events, lambda got: {a, b} <= positions_of(got).keys())
        # Vehicle a moves; b does not and is not sent again.
        publish(broker, f"telemetry/walkthrough/{a}", [_reading(39.93, 116.43)])
        moved = await take_until(
            events, lambda got: positions_of(got).get(a, {}).get("lat") == 39.93
        )
        # An alert transition still arrives, with its id, among the positions.
        alert_id = await insert_alert(pool)
        [opened] = [
            e
            for e in await take_until(events, lambda got: any(e["event"] == "alert" for e in got))
            if e["event"] == "alert"
        ]
        # Take a little more so that b had its chance to be (wrongly) sent again.
        publish(broker, f"telemetry/walkthrough/{a}", [_reading(39.94, 116.44)])
        later = await take_until(
            events, lambda got: positions_of(got).get(a, {}).get("lat") == 39.94
        )

    positions = positions_of(first)
    assert (positions[a]["lat"], positions[a]["lon"]) == (39.91, 116.41)
    assert (positions[b]["lat"], positions[b]["lon"]) == (39.92, 116.42)
    assert positions[a]["kind"] == positions[b]["kind"] == "walkthrough"
    assert datetime.fromisoformat(positions[a]["ts"]).tzinfo is not None
    # Positions are ephemeral: no event id, so Last-Event-ID stays that of the alerts.
    assert all("id" not in e for e in first + moved + later if e["event"] == "positions")
    for e in first + moved + later:
        if e["event"] == "positions":  # each vehicle at most once per event
            ids = [p["vehicle_id"] for p in e["data"]["positions"]]
            assert len(ids) == len(set(ids))
    assert b not in positions_of(moved + later)
    assert opened["event"] == "alert" and opened["data"]["alert_id"] == alert_id

    # Resume after the alert event: positions again (a fresh snapshot of both vehicles),
    # then only the alert events after it.
    async with (
        httpx.AsyncClient(base_url=url, timeout=HANG_S) as http,
        http.stream(
            "GET",
            "/api/v1/events",
            headers=bearer(viewer) | {"Last-Event-ID": opened["id"]},
        ) as response,
    ):
        events = sse(response)
        snapshot = await take_until(events, lambda got: {a, b} <= positions_of(got).keys())
        second = await insert_alert(pool)
        resumed = await take_until(events, lambda got: any(e["event"] == "alert" for e in got))
    assert positions_of(snapshot)[a]["lat"] == 39.94
    [alert] = [e for e in resumed if e["event"] == "alert"]
    assert alert["data"]["alert_id"] == second and int(alert["id"]) > int(opened["id"])


async def test_positions_can_be_left_out(
    server: tuple[str, uvicorn.Server], database_url: str, pool: asyncpg.Pool
) -> None:
    url, _ = server
    viewer = await grant_token(database_url, "viewer")
    await pool.execute(
        "INSERT INTO vehicles (vehicle_id, kind, last_ts, last_lat, last_lon, last_received_at)"
        " VALUES ('still', 'walkthrough', now(), 39.5, 116.5, now())"
    )
    async with httpx.AsyncClient(base_url=url, timeout=HANG_S) as http:
        async with http.stream(
            "GET", "/api/v1/events", params={"access_token": viewer, "positions": "0"}
        ) as response:
            events = sse(response)
            alert_id = await insert_alert(pool)
            [first] = await take(events, 1)
        assert first["event"] == "alert" and first["data"]["alert_id"] == alert_id

        async with http.stream(
            "GET", "/api/v1/events", params={"access_token": viewer}
        ) as response:
            [first] = await take(sse(response), 1)
        assert first["event"] == "positions"
        assert first["data"]["positions"] == [
            {
                "vehicle_id": "still",
                "kind": "walkthrough",
                "lat": 39.5,
                "lon": 116.5,
                "ts": first["data"]["positions"][0]["ts"],
            }
        ]


def _row(vehicle_id: str, lat: float, lon: float, second: int) -> dict[str, Any]:
    ts = datetime(2026, 1, 1, 8, 0, second, tzinfo=UTC)
    return {"vehicle_id": vehicle_id, "kind": "walkthrough", "lat": lat, "lon": lon, "ts": ts}


def _drain(subscriber: Any) -> list[dict[str, Any]]:
    text = subscriber.take()
    if text is None:
        return []
    assert text.startswith("event: positions\ndata: ") and text.endswith("\n\n")
    assert "\nid:" not in text
    data: dict[str, Any] = json.loads(text.split("data: ", 1)[1])
    return list(data["positions"])


async def test_hub_sends_only_moved_vehicles_once_each_and_snapshots_new_subscribers() -> None:
    # No pool: the hub's own task reads nothing; publish() is what it calls each tick.
    hub = PositionHub(lambda: None, interval_s=1.0, online_s=60.0)
    sub = hub.subscribe()
    try:
        assert _drain(sub) == []
        hub.publish([_row("a", 39.0, 116.0, 0), _row("b", 39.1, 116.1, 0)])
        assert [p["vehicle_id"] for p in _drain(sub)] == ["a", "b"]

        hub.publish([_row("a", 39.0, 116.0, 1), _row("b", 39.2, 116.1, 1)])  # a stood still
        assert _drain(sub) == [
            {"vehicle_id": "b", "kind": "walkthrough", "lat": 39.2, "lon": 116.1,
             "ts": "2026-01-01T08:00:01Z"},
        ]  # fmt: skip
        hub.publish([_row("a", 39.0, 116.0, 2), _row("b", 39.2, 116.1, 2)])
        assert _drain(sub) == []

        # A new stream starts with every live vehicle, a with its first time at that place.
        late = hub.subscribe()
        assert sorted((p["vehicle_id"], p["lat"], p["ts"]) for p in _drain(late)) == [
            ("a", 39.0, "2026-01-01T08:00:00Z"),
            ("b", 39.2, "2026-01-01T08:00:01Z"),
        ]
        hub.unsubscribe(late)

        # A slow client: ticks merge into one event, the newest position per vehicle.
        hub.publish([_row("a", 39.3, 116.0, 3)])  # b went quiet: forgotten
        hub.publish([_row("a", 39.4, 116.0, 4), _row("b", 39.2, 116.1, 4)])  # b back: sent
        for second in range(5, 12):
            hub.publish([_row("a", 39.0 + second / 10, 116.0, second)])
        merged = _drain(sub)
        assert sorted((p["vehicle_id"], p["lat"]) for p in merged) == [("a", 40.1), ("b", 39.2)]
        assert _drain(sub) == []
    finally:
        hub.unsubscribe(sub)
