"""Webhooks: targets managed by admins, alert transitions delivered to a real HTTP receiver
(an asyncio server on a free port), signed, retried with back-off and given up; the signature
and the back-off schedule with literal values."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from conftest import free_port
from support import eventually
from test_api_alerts import insert_alert

from telemetry.alerts.dispatcher import WebhookDispatcher
from telemetry.alerts.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Outcome,
    backoff_s,
    delivery_headers,
    judge,
    sign,
    verify,
)
from telemetry.settings import Settings
from telemetry.store.audit import Actor
from telemetry.store.webhooks import insert_webhook, list_deliveries


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Tiny back-off and a quick poll, so that retries happen within the test; nothing asserts
    # on time.
    return Settings(
        database_url=database_url,
        ingest_enabled=False,
        webhook_poll_s=0.05,
        webhook_timeout_s=5,
        webhook_backoff_first_s=0.01,
        webhook_backoff_max_s=0.05,
        webhook_max_attempts=3,
        webhook_failing_after=2,
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP/1.1 server that records every request and answers the next of ``statuses``
    (200 once they run out)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    silent: bool = False  # never answer; wait for the sender to hang up

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                _, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Received(path, headers, body))
                if self.silent:
                    await reader.read()
                    return
                status = self.statuses.pop(0) if self.statuses else 200
                writer.write(f"HTTP/1.1 {status} Status\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
    r.port = server.sockets[0].getsockname()[1]
    async with server:
        yield r
        server.close()


async def add_target(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries(client: httpx.AsyncClient, webhook_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- literal values ------------------------------------------------------------------------

SECRET = "whsec-test-0123456789"
BODY = b'{"id":1,"type":"opened"}'
# printf '1700000000.{"id":1,"type":"opened"}' | openssl dgst -sha256 -hmac whsec-test-0123456789
SIGNATURE = "sha256=04869ef5b33799c3c672d473741b742fd51ba31d3c26ddd3ec74383074e4b02b"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    assert sign(SECRET, 1_700_000_000, BODY) == SIGNATURE
    headers = delivery_headers(SECRET, 1, 1_700_000_000, BODY)
    assert headers[SIGNATURE_HEADER] == SIGNATURE
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    assert headers[EVENT_ID_HEADER] == "1"


def test_verify_refuses_other_secret_body_timestamp_or_an_old_one() -> None:
    now = 1_700_000_100.0
    assert verify(SECRET, "1700000000", SIGNATURE, BODY, now_s=now)
    assert not verify("another-secret-0123", "1700000000", SIGNATURE, BODY, now_s=now)
    assert not verify(SECRET, "1700000000", SIGNATURE, BODY + b" ", now_s=now)
    assert not verify(SECRET, "1700000001", SIGNATURE, BODY, now_s=now)  # replayed as newer
    assert not verify(SECRET, "1700000000", SIGNATURE, BODY, now_s=now + 300)  # too old
    assert not verify(SECRET, "-1", SIGNATURE, BODY, now_s=now)


@pytest.mark.parametrize(
    ("attempts", "draw", "expected"),
    [
        (1, 0.0, 5.0),
        (2, 0.0, 10.0),
        (3, 0.0, 20.0),
        (3, 0.5, 15.0),  # jitter 0.5 · draw 0.5: a quarter shorter
        (3, 0.999, 10.01),
        (10, 0.0, 2560.0),
        (11, 0.0, 3600.0),  # capped
        (500, 0.0, 3600.0),
    ],
)
def test_backoff_doubles_from_first_up_to_the_cap_less_jitter(
    attempts: int, draw: float, expected: float
) -> None:
    got = backoff_s(attempts, first_s=5.0, max_s=3600.0, jitter=0.5, draw=draw)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("status", "attempts", "age_s", "outcome"),
    [
        (200, 1, 0.0, Outcome.DELIVERED),
        (204, 10, 0.0, Outcome.DELIVERED),
        (500, 1, 0.0, Outcome.RETRY),
        (503, 9, 0.0, Outcome.RETRY),
        (503, 10, 0.0, Outcome.FAILED),  # max attempts reached
        (None, 1, 0.0, Outcome.RETRY),  # no answer: timeout, refused connection
        (None, 2, 86_400.0, Outcome.FAILED),  # too old
        (429, 1, 0.0, Outcome.RETRY),
        (408, 1, 0.0, Outcome.RETRY),
        (400, 1, 0.0, Outcome.FAILED),  # the same body would be refused again
        (410, 1, 0.0, Outcome.FAILED),
        (301, 1, 0.0, Outcome.FAILED),  # redirects are not followed
    ],
)
def test_judge(status: int | None, attempts: int, age_s: float, outcome: Outcome) -> None:
    got = judge(status, attempts=attempts, age_s=age_s, max_attempts=10, max_age_s=86_400.0)
    assert got is outcome


# --- through the API and a real receiver -----------------------------------------------------


async def test_transition_is_delivered_signed_to_the_receiver(
    client: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    target = await add_target(client, url=receiver.url, description="county dispatch")
    secret = target["secret"]
    assert len(secret) >= 32 and target["state"] == "ok"
    listed = (await client.get("/api/v1/webhooks")).json()
    assert [w["id"] for w in listed] == [target["id"]]
    assert "secret" not in listed[0]  # shown once, when made

    alert_id = await insert_alert(pool, severity="warning")
    await eventually(lambda: _received(receiver, 1))
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    timestamp = request.headers["x-telemetry-timestamp"]
    signature = request.headers["x-telemetry-signature"]
    assert verify(secret, timestamp, signature, request.body, now_s=time.time())
    body = json.loads(request.body)
    assert body["alert_id"] == alert_id and body["type"] == "opened"
    assert (body["kind"], body["pollutant"], body["severity"]) == ("walkthrough", "pm25", "warning")
    assert request.headers["x-telemetry-event-id"] == str(body["id"])

    async def delivered() -> list[dict[str, Any]] | None:
        items = await deliveries(client, target["id"])
        return items if items and items[0]["status"] == "delivered" else None

    [delivery] = await eventually(delivered)
    assert delivery["event_id"] == body["id"] and delivery["attempts"] == 1
    assert delivery["last_status"] == 200 and delivery["next_attempt_at"] is None


async def _received(receiver: Receiver, n: int) -> bool:
    return len(receiver.requests) >= n


async def test_receiver_failing_twice_gets_it_on_the_third_attempt(
    client: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    target = await add_target(client, url=receiver.url)
    await insert_alert(pool)

    async def delivered() -> dict[str, Any] | None:
        items = await deliveries(client, target["id"])
        return items[0] if items and items[0]["status"] == "delivered" else None

    delivery = await eventually(delivered)
    assert delivery["attempts"] == 3 and delivery["last_status"] == 200
    assert delivery["last_error"] is None
    assert len(receiver.requests) == 3
    # The same event on every attempt, each signed afresh.
    assert len({r.headers["x-telemetry-event-id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    [webhook] = (await client.get("/api/v1/webhooks")).json()
    assert webhook["consecutive_failures"] == 0 and webhook["state"] == "ok"
    assert webhook["last_error"] == "HTTP 500 Status"


async def test_dead_url_ends_failed_with_its_error_visible(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    target = await add_target(client, url=f"http://127.0.0.1:{free_port()}/nobody-listens")
    await insert_alert(pool)

    async def failed() -> dict[str, Any] | None:
        items = await deliveries(client, target["id"])
        return items[0] if items and items[0]["status"] == "failed" else None

    delivery = await eventually(failed)
    assert delivery["attempts"] == 3  # webhook_max_attempts
    assert delivery["last_status"] is None and "ConnectError" in delivery["last_error"]
    assert delivery["next_attempt_at"] is None
    webhook = (await client.get(f"/api/v1/webhooks/{target['id']}")).json()
    assert webhook["state"] == "failing" and webhook["failed"] == 1 and webhook["pending"] == 0
    assert "ConnectError" in webhook["last_error"]
    only_failed = await client.get(
        f"/api/v1/webhooks/{target['id']}/deliveries", params={"status": "delivered"}
    )
    assert only_failed.json()["items"] == []
    metrics = (await client.get("/metrics")).text
    assert 'telemetry_webhook_attempts_total{outcome="failed"}' in metrics


async def test_filters_select_the_events_a_target_gets(
    client: httpx.AsyncClient, officer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # Unreachable URLs: what counts is which deliveries exist, not how they go.
    url = f"http://127.0.0.1:{free_port()}/"
    every = await add_target(client, url=url)
    emergency = await add_target(client, url=url, kinds=["emergency"])
    critical = await add_target(client, url=url, severities=["critical"])
    acks = await add_target(client, url=url, event_types=["acknowledged", "resolved"])
    both = await add_target(
        client, url=url, kinds=["walkthrough"], severities=["warning", "critical"]
    )

    info = await insert_alert(pool, severity="info")
    severe = await insert_alert(pool, severity="critical")
    ack = await officer_client.post(f"/api/v1/alerts/{info}/ack", json={"note": "seen"})
    assert ack.status_code == 200, ack.text

    async def got(target: dict[str, Any]) -> list[tuple[int | None, str | None]]:
        return sorted((d["alert_id"], d["type"]) for d in await deliveries(client, target["id"]))

    assert await got(every) == [(info, "acknowledged"), (info, "opened"), (severe, "opened")]
    assert await got(emergency) == []
    assert await got(critical) == [(severe, "opened")]
    assert await got(acks) == [(info, "acknowledged")]
    assert await got(both) == [(severe, "opened")]


async def test_only_admins_manage_targets_and_changes_are_audited(
    client: httpx.AsyncClient,
    officer_client: httpx.AsyncClient,
    viewer_client: httpx.AsyncClient,
    anonymous_client: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    body = {"url": receiver.url, "secret": "given-secret-0123456789"}
    for other in (officer_client, viewer_client):
        assert (await other.post("/api/v1/webhooks", json=body)).status_code == 403
        assert (await other.get("/api/v1/webhooks")).status_code == 403
    assert (await anonymous_client.get("/api/v1/webhooks")).status_code == 401

    target = await add_target(client, **body, severities=["critical"])
    assert target["secret"] == body["secret"]
    path = f"/api/v1/webhooks/{target['id']}"
    assert (await officer_client.delete(path)).status_code == 403
    assert (await officer_client.get(f"{path}/deliveries")).status_code == 403
    assert (await client.delete(path)).status_code == 204
    assert (await client.delete(path)).status_code == 404
    assert (await client.get(f"{path}/deliveries")).status_code == 404

    audit = (await client.get("/api/v1/audit", params={"entity": "webhook"})).json()["items"]
    assert [(e["action"], e["account"]) for e in audit] == [
        ("webhook.delete", "test-admin"),
        ("webhook.create", "test-admin"),
    ]
    assert audit[1]["after"]["severities"] == ["critical"]
    assert body["secret"] not in json.dumps(audit)


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.org/x"},
        {"url": "http://"},
        {"url": "https://user:pass@example.org/"},
        {"url": "https://example.org/", "secret": "short"},
        {"url": "https://example.org/", "kinds": ["bus"]},
        {"url": "https://example.org/", "severities": []},
        {"url": "https://example.org/", "event_types": ["created"]},
        {"url": "https://example.org/", "other": 1},
    ],
)
async def test_invalid_targets_are_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/api/v1/webhooks", json=body)
    assert response.status_code == 422, response.text


async def test_several_dispatchers_deliver_each_event_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, receiver: Receiver
) -> None:
    # The app's dispatcher and two more, as in three API processes.
    others = [WebhookDispatcher(settings, lambda: pool) for _ in range(2)]
    for dispatcher in others:
        dispatcher.start()
    try:
        await add_target(client, url=receiver.url)
        alerts = [await insert_alert(pool) for _ in range(40)]
        await eventually(lambda: _received(receiver, len(alerts)))
        await asyncio.sleep(0.3)  # room for a duplicate to show up, were there one
    finally:
        for dispatcher in others:
            await dispatcher.stop()
    sent = sorted(json.loads(r.body)["alert_id"] for r in receiver.requests)
    assert sent == sorted(alerts)


async def test_a_receiver_that_never_answers_is_retried_then_failed(
    pool: asyncpg.Pool, settings: Settings, receiver: Receiver
) -> None:
    receiver.silent = True
    quick = settings.model_copy(update={"webhook_timeout_s": 0.2, "webhook_max_attempts": 2})
    target = await insert_webhook(
        pool,
        Actor(None, "cli:tests"),
        url=receiver.url,
        secret=SECRET,
        description=None,
        kinds=None,
        severities=None,
        event_types=None,
    )
    await insert_alert(pool)

    async def failed() -> list[dict[str, Any]] | None:
        rows = await list_deliveries(pool, target["id"])
        return rows if rows and rows[0]["status"] == "failed" else None

    dispatcher = WebhookDispatcher(quick, lambda: pool)
    dispatcher.start()
    try:
        [delivery] = await eventually(failed)
    finally:
        await dispatcher.stop()
    assert delivery["attempts"] == 2 and delivery["last_status"] is None
    assert delivery["last_error"] == "no answer within 0.2 s"
    assert len(receiver.requests) == 2
