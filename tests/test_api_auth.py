"""People and what they may do: logging in for a bearer token, 401 without a live one, 403 for
too small a role, the account (not the body) recorded as who did it, the audit log, the login
throttle, ``telemetry users``, ``/metrics`` behind a token, and the emergency simulator logging
in to open its incident."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from conftest import free_port
from support import TEST_PASSWORD, api_client, bearer, grant_token

from api.app import create_app
from simulators import emergency
from telemetry.settings import Settings
from telemetry.web import ERROR_CODES, ErrorBody

T0 = dt.datetime(2025, 6, 1, 8, tzinfo=dt.UTC)
_subjects = itertools.count(1)


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    request = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, (request, response.text)
    body: dict[str, Any] = response.json()
    ErrorBody.model_validate(body)
    assert body["error"] == ERROR_CODES[status][0], request
    return body


def assert_unauthorized(response: httpx.Response, *, invalid_token: bool = False) -> None:
    assert_error(response, 401)
    expected = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
    assert response.headers["www-authenticate"] == expected


async def insert_alert(pool: asyncpg.Pool) -> int:
    alert_id: int = await pool.fetchval(
        "INSERT INTO alerts (kind, subject, pollutant, rule, limit_value, unit, source,"
        " first_seen, last_seen, last_value, peak_value, peak_multiple)"
        " VALUES ('walkthrough', $2, 'pm25', 'limit', 75, 'ug/m3', 'GB 3095',"
        " $1, $1, 90, 120, 0.6) RETURNING id",
        T0,
        f"segment:{next(_subjects)}",
    )
    return alert_id


async def log_in(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": name, "password": password})


def _api_routes() -> list[tuple[str, str]]:
    """(method, path with ids filled in) of every ``/api/v1`` operation."""
    document = create_app(Settings(database_url="postgresql://unused/")).openapi()
    routes = []
    for path, operations in document["paths"].items():
        if path.startswith("/api/v1"):
            for method in operations:
                routes.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return routes


# --- no live token: 401 ---------------------------------------------------------------------


async def test_every_api_route_but_login_answers_401_without_a_token(
    anonymous_client: httpx.AsyncClient,
) -> None:
    routes = _api_routes()
    assert ("POST", "/api/v1/auth/token") in routes
    for method, path in routes:
        if path == "/api/v1/auth/token":
            continue
        response = await anonymous_client.request(method, path, json={})

        assert_unauthorized(response)
        assert "bearer token" in response.json()["detail"]


async def test_a_forged_token_is_401(anonymous_client: httpx.AsyncClient) -> None:
    for token in ["tlm_forged", "x" * 300, "Bearer"]:
        response = await anonymous_client.get("/api/v1/alerts", headers=bearer(token))

        assert_unauthorized(response, invalid_token=True)


async def test_an_expired_token_is_401(
    anonymous_client: httpx.AsyncClient, database_url: str, pool: asyncpg.Pool
) -> None:
    token = await grant_token(database_url, "viewer")
    assert (await anonymous_client.get("/api/v1/alerts", headers=bearer(token))).status_code == 200

    await pool.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second'")

    response = await anonymous_client.get("/api/v1/alerts", headers=bearer(token))
    assert_unauthorized(response, invalid_token=True)


async def test_logging_in_gives_a_token_and_logging_out_revokes_it(
    anonymous_client: httpx.AsyncClient, database_url: str
) -> None:
    await grant_token(database_url, "officer")  # makes test-officer with TEST_PASSWORD

    response = await log_in(anonymous_client, "test-officer", TEST_PASSWORD)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == Settings(database_url=database_url).token_ttl_s
    assert response.headers["cache-control"] == "no-store"
    auth = bearer(body["access_token"])
    me = await anonymous_client.get("/api/v1/auth/me", headers=auth)
    assert me.json() == {"name": "test-officer", "role": "officer"}

    out = await anonymous_client.post("/api/v1/auth/logout", headers=auth)

    assert out.status_code == 204
    assert_unauthorized(
        await anonymous_client.get("/api/v1/auth/me", headers=auth), invalid_token=True
    )


async def test_a_wrong_password_or_unknown_name_is_401_alike(
    anonymous_client: httpx.AsyncClient, database_url: str
) -> None:
    await grant_token(database_url, "viewer")

    wrong = await log_in(anonymous_client, "test-viewer", "not the password")
    unknown = await log_in(anonymous_client, "nobody", TEST_PASSWORD)

    assert_unauthorized(wrong)
    assert_unauthorized(unknown)
    assert wrong.json()["detail"] == unknown.json()["detail"] == "wrong name or password"


async def test_disabling_an_account_revokes_its_tokens_at_once(
    client: httpx.AsyncClient, viewer_client: httpx.AsyncClient
) -> None:
    assert (await viewer_client.get("/api/v1/alerts")).status_code == 200

    disabled = await client.patch("/api/v1/users/test-viewer", json={"disabled": True})

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True
    assert_unauthorized(await viewer_client.get("/api/v1/alerts"), invalid_token=True)
    assert_unauthorized(await log_in(viewer_client, "test-viewer", TEST_PASSWORD))


# --- roles: 403 -----------------------------------------------------------------------------


async def test_a_viewer_reads_everything_but_cannot_acknowledge(
    viewer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    alert_id = await insert_alert(pool)
    for path in ["/api/v1/alerts", f"/api/v1/alerts/{alert_id}", "/api/v1/thresholds",
                 "/api/v1/incidents", "/api/v1/emergency/tiers", "/api/v1/remote-sensing/gates",
                 "/api/v1/vehicles", "/api/v1/dead-letters"]:  # fmt: skip
        assert (await viewer_client.get(path)).status_code == 200, path

    response = await viewer_client.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "mine"})

    body = assert_error(response, 403)
    assert "officer" in body["detail"]
    assert await pool.fetchval("SELECT status FROM alerts WHERE id = $1", alert_id) == "open"
    assert_error(await viewer_client.post("/api/v1/incidents", json={"name": "x", "lat": 1,
                                                                     "lon": 1}), 403)  # fmt: skip
    assert_error(await viewer_client.get("/api/v1/audit"), 403)


async def test_an_officer_acknowledges_under_their_own_name_but_cannot_change_thresholds(
    officer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    alert_id = await insert_alert(pool)
    before = await pool.fetchval("SELECT count(*) FROM thresholds")

    acked = await officer_client.post(
        f"/api/v1/alerts/{alert_id}/ack", json={"by": "someone-else", "note": "crew sent"}
    )
    threshold = await officer_client.post("/api/v1/thresholds", json=_threshold())
    gate = await officer_client.put("/api/v1/remote-sensing/gates/1", json=_gate())
    users = await officer_client.get("/api/v1/users")

    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "test-officer"
    assert "admin" in assert_error(threshold, 403)["detail"]
    assert_error(gate, 403)
    assert_error(users, 403)
    assert await pool.fetchval("SELECT count(*) FROM thresholds") == before


def _threshold(**changes: Any) -> dict[str, Any]:
    return {
        "kind": "walkthrough",
        "pollutant": "tvoc",
        "limit_value": 300,
        "unit": "ug/m3",
        "averaging": "instant",
        "source": "local rule",
        "tier": "trigger",  # a local fixed-point trigger, like the seeded TVOC row
        "effective_from": "2030-01-01",
    } | changes


def _gate(**changes: Any) -> dict[str, Any]:
    return {"min_value": 0, "max_value": 45, "source": "vendor manual", "confirmed": False} | (
        changes
    )


# --- the audit log --------------------------------------------------------------------------


async def test_an_admin_changes_limits_and_the_audit_lists_who_before_and_after(
    client: httpx.AsyncClient, officer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    alert_id = await insert_alert(pool)
    gate_before = dict(await pool.fetchrow("SELECT * FROM rs_gates WHERE id = 1"))

    first = await client.post("/api/v1/thresholds", json=_threshold())
    second = await client.post(
        "/api/v1/thresholds", json=_threshold(limit_value=250, effective_from="2031-01-01")
    )
    gate = await client.put("/api/v1/remote-sensing/gates/1", json=_gate(max_value=44))
    await officer_client.post(f"/api/v1/alerts/{alert_id}/ack", json={"by": "not me"})

    assert first.status_code == second.status_code == 201
    assert gate.status_code == 200
    page = (await client.get("/api/v1/audit")).json()
    actions = [(e["account"], e["action"], e["entity"]) for e in page["items"]]
    assert actions == [
        ("test-officer", "alert.acknowledge", "alert"),
        ("test-admin", "rs_gate.update", "rs_gate"),
        ("test-admin", "threshold.create", "threshold"),
        ("test-admin", "threshold.supersede", "threshold"),
        ("test-admin", "threshold.create", "threshold"),
        ("test-admin", "threshold.supersede", "threshold"),  # the seeded open-ended TVOC row
    ]
    ack, gate_change, created, superseded, _, _ = page["items"]
    assert ack["entity_id"] == str(alert_id)
    assert (ack["before"]["status"], ack["after"]["status"]) == ("open", "acknowledged")
    assert ack["after"]["acknowledged_by"] == "test-officer"
    assert gate_change["before"]["max_value"] == gate_before["max_value"]
    assert gate_change["after"]["max_value"] == 44
    assert created["before"] is None
    assert created["after"]["limit_value"] == 250
    assert superseded["entity_id"] == str(first.json()["id"])
    assert superseded["before"]["effective_to"] is None
    assert superseded["after"]["effective_to"] == "2031-01-01"
    assert all(dt.datetime.fromisoformat(e["at"]).tzinfo is not None for e in page["items"])


async def test_the_audit_filters_by_account_entity_and_window_and_pages_newest_first(
    client: httpx.AsyncClient, officer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    ids = [await insert_alert(pool) for _ in range(3)]
    for alert_id in ids:
        await officer_client.post(f"/api/v1/alerts/{alert_id}/ack")
    await client.put("/api/v1/remote-sensing/gates/1", json=_gate())

    mine = (await client.get("/api/v1/audit", params={"account": "test-officer"})).json()
    gates = (await client.get("/api/v1/audit", params={"entity": "rs_gate"})).json()
    later = (
        await client.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00+00:00"})
    ).json()
    first = (await client.get("/api/v1/audit", params={"limit": 2})).json()
    rest = (
        await client.get("/api/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()

    assert [e["entity_id"] for e in mine["items"]] == [str(i) for i in reversed(ids)]
    assert [e["action"] for e in gates["items"]] == ["rs_gate.update"]
    assert later["items"] == []
    assert len(first["items"]) == 2 and first["next_cursor"] is not None
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    everything = [e["id"] for e in first["items"] + rest["items"]]
    assert everything == sorted(everything, reverse=True)


async def test_opening_and_closing_an_incident_is_audited_as_the_officer(
    client: httpx.AsyncClient, officer_client: httpx.AsyncClient
) -> None:
    body = {"name": "leak", "lat": 24.0, "lon": 118.0, "by": "someone-else"}
    incident = (await officer_client.post("/api/v1/incidents", json=body)).json()
    closed = await officer_client.post(f"/api/v1/incidents/{incident['id']}/close")

    assert incident["opened_by"] == "test-officer"
    assert closed.json()["closed_by"] == "test-officer"
    page = (await client.get("/api/v1/audit", params={"entity": "incident"})).json()
    assert [(e["action"], e["account"]) for e in page["items"]] == [
        ("incident.close", "test-officer"),
        ("incident.open", "test-officer"),
    ]
    assert page["items"][0]["before"]["closed_at"] is None
    assert page["items"][0]["after"]["closed_at"] is not None


# --- the login throttle ---------------------------------------------------------------------


async def test_failed_logins_for_one_name_answer_429_with_retry_after(database_url: str) -> None:
    await grant_token(database_url, "viewer")
    settings = Settings(
        database_url=database_url, ingest_enabled=False, login_max_failures_per_user=2
    )
    async with api_client(settings, role=None) as anonymous:
        failures = [await log_in(anonymous, "test-viewer", "wrong guess") for _ in range(2)]
        limited = await log_in(anonymous, "test-viewer", "wrong guess")
        even_right = await log_in(anonymous, "test-viewer", TEST_PASSWORD)
        other_name = await log_in(anonymous, "someone-else", "wrong guess")

    assert [r.status_code for r in failures] == [401, 401]
    for response in (limited, even_right):
        assert "too many failed logins" in assert_error(response, 429)["detail"]
        assert 1 <= int(response.headers["retry-after"]) <= settings.login_window_s
    assert other_name.status_code == 401


async def test_failed_logins_from_one_address_answer_429_and_a_success_takes_its_attempt_back(
    database_url: str,
) -> None:
    await grant_token(database_url, "viewer")
    settings = Settings(
        database_url=database_url, ingest_enabled=False, login_max_failures_per_address=2
    )
    async with api_client(settings, role=None) as anonymous:
        successes = [await log_in(anonymous, "test-viewer", TEST_PASSWORD) for _ in range(3)]
        failures = [await log_in(anonymous, f"guess-{i}", "wrong guess") for i in range(2)]
        limited = await log_in(anonymous, "guess-3", "wrong guess")

    assert [r.status_code for r in successes] == [200, 200, 200]
    assert [r.status_code for r in failures] == [401, 401]
    assert_error(limited, 429)
    assert "this address" in limited.json()["detail"]


# --- accounts -------------------------------------------------------------------------------


def _telemetry(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env["TELEMETRY_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_users_add_prints_a_password_on_its_last_line_that_logs_in(
    database_url: str, anonymous_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    added = _telemetry(database_url, "users", "add", "li.wei", "--role", "officer")
    chosen = _telemetry(
        database_url, "users", "add", "wang.fang", "--role", "viewer", "--password-stdin",
        stdin="a password of her own\n",
    )  # fmt: skip
    again = _telemetry(database_url, "users", "add", "li.wei", "--role", "viewer")

    assert added.returncode == 0, added.stderr
    password = added.stdout.strip().splitlines()[-1]
    response = await log_in(anonymous_client, "li.wei", password)
    assert response.status_code == 200, response.text
    me = await anonymous_client.get(
        "/api/v1/auth/me", headers=bearer(response.json()["access_token"])
    )
    assert me.json() == {"name": "li.wei", "role": "officer"}
    assert chosen.returncode == 0, chosen.stderr
    assert (await log_in(anonymous_client, "wang.fang", "a password of her own")).status_code == 200
    assert again.returncode != 0
    assert "already exists" in again.stderr
    audit = (await client.get("/api/v1/audit", params={"entity": "account"})).json()
    created = [e for e in audit["items"] if e["action"] == "account.create"]
    assert {e["entity_id"] for e in created} == {"li.wei", "wang.fang"}
    assert all(e["account"].startswith("cli:") for e in created)
    assert all("password_hash" not in e["after"] for e in created)


async def test_users_commands_change_roles_disable_and_issue_tokens(
    database_url: str, anonymous_client: httpx.AsyncClient
) -> None:
    assert _telemetry(database_url, "users", "add", "ops", "--role", "viewer").returncode == 0

    role = _telemetry(database_url, "users", "set-role", "ops", "admin")
    issued = _telemetry(database_url, "users", "token", "ops")
    token = issued.stdout.strip().splitlines()[-1]
    me = await anonymous_client.get("/api/v1/auth/me", headers=bearer(token))
    last_admin = _telemetry(database_url, "users", "disable", "ops")
    await grant_token(database_url, "admin")  # a second admin
    disabled = _telemetry(database_url, "users", "disable", "ops")
    listed = _telemetry(database_url, "users", "list")

    assert role.returncode == 0, role.stderr
    assert me.json() == {"name": "ops", "role": "admin"}
    assert last_admin.returncode != 0
    assert "only enabled admin" in last_admin.stderr
    assert disabled.returncode == 0, disabled.stderr
    assert_unauthorized(
        await anonymous_client.get("/api/v1/auth/me", headers=bearer(token)), invalid_token=True
    )
    assert re.search(r"^ops\tadmin\tdisabled", listed.stdout, re.MULTILINE), listed.stdout


async def test_admins_manage_accounts_over_http_but_cannot_remove_the_last_admin(
    client: httpx.AsyncClient, anonymous_client: httpx.AsyncClient
) -> None:
    created = await client.post("/api/v1/users", json={"name": "chen", "role": "officer"})
    demote_self = await client.patch("/api/v1/users/test-admin", json={"role": "viewer"})
    disable_self = await client.patch("/api/v1/users/test-admin", json={"disabled": True})
    listed = (await client.get("/api/v1/users")).json()

    assert created.status_code == 201, created.text
    password = created.json()["password"]
    assert (await log_in(anonymous_client, "chen", password)).status_code == 200
    assert "only enabled admin" in assert_error(demote_self, 409)["detail"]
    assert_error(disable_self, 409)
    assert {(a["name"], a["role"]) for a in listed} >= {
        ("chen", "officer"),
        ("test-admin", "admin"),
    }
    assert all("password" not in a for a in listed)
    assert_error(await client.post("/api/v1/users", json={"name": "Chen", "role": "viewer"}), 422)
    assert_error(await client.post("/api/v1/users", json={"name": "chen", "role": "viewer"}), 409)


# --- /metrics and /healthz ------------------------------------------------------------------


async def test_metrics_need_a_token_only_when_not_public(database_url: str) -> None:
    private = Settings(database_url=database_url, ingest_enabled=False, metrics_public=False)
    public = Settings(database_url=database_url, ingest_enabled=False)

    async with api_client(private, role=None) as anonymous:
        refused = await anonymous.get("/metrics")
        health = await anonymous.get("/healthz")
    async with api_client(private, role="viewer") as viewer:
        allowed = await viewer.get("/metrics")
    async with api_client(public, role=None) as anonymous:
        open_metrics = await anonymous.get("/metrics")

    assert_unauthorized(refused)
    assert health.status_code == 200
    assert allowed.status_code == 200
    assert open_metrics.status_code == 200


# --- the emergency simulator ----------------------------------------------------------------


def test_the_emergency_simulator_opens_its_incident_as_the_account_it_logs_in_with(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(grant_token(database_url, "officer"))
    port = free_port()
    app = create_app(Settings(database_url=database_url, ingest_enabled=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        body = {"name": "simulated h2s release", "lat": 24.0, "lon": 118.0}
        monkeypatch.delenv("TELEMETRY_API_TOKEN", raising=False)
        with pytest.raises(emergency.ValidationError, match="TELEMETRY_API_TOKEN"):
            emergency.api_token(url, None)
        monkeypatch.setenv("TELEMETRY_API_PASSWORD", "wrong password")
        with pytest.raises(emergency.TelemetryError, match="401 wrong name or password"):
            emergency.api_token(url, "test-officer")

        monkeypatch.setenv("TELEMETRY_API_PASSWORD", TEST_PASSWORD)
        token = emergency.api_token(url, "test-officer")
        incident_id = emergency._open_incident(url, body, token)

        monkeypatch.setenv("TELEMETRY_API_TOKEN", token)
        again = emergency._open_incident(url, body, emergency.api_token(url, None))
    finally:
        server.should_exit = True
        thread.join(timeout=20)

    async def opened_by() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT opened_by FROM incidents WHERE id = ANY($1) ORDER BY id",
                [incident_id, again],
            )
        finally:
            await conn.close()
        return [r["opened_by"] for r in rows]

    assert asyncio.run(opened_by()) == ["test-officer", "test-officer"]
