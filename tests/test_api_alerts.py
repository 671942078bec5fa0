"""The alerts API against a real database: filters, keyset pages, transitions and errors."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
_subjects = itertools.count(1)


async def insert_alert(pool: asyncpg.Pool, **values: Any) -> int:
    """One alert row; every column not given gets a plausible open pm25 limit exceedance."""
    n = next(_subjects)
    row: dict[str, Any] = {
        "kind": "walkthrough",
        "subject": f"segment:{n}",
        "segment_id": n,
        "pollutant": "pm25",
        "rule": "limit",
        "status": "open",
        "limit_value": 75.0,
        "unit": "ug/m3",
        "averaging": "24h",
        "source": "GB 3095-2012 Grade II",
        "first_seen": T0,
        "last_seen": T0 + timedelta(minutes=5),
        "last_value": 90.0,
        "peak_value": 120.0,
        "peak_multiple": 0.6,
        "vehicles": ["wt-01"],
    } | values
    columns = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    alert_id: int = await pool.fetchval(
        f"INSERT INTO alerts ({columns}) VALUES ({params}) RETURNING id", *row.values()
    )
    return alert_id


async def ids(
    client: httpx.AsyncClient, params: dict[str, Any] | list[tuple[str, Any]]
) -> list[int]:
    response = await client.get("/api/v1/alerts", params=params)
    assert response.status_code == 200, response.text
    return [a["id"] for a in response.json()["items"]]


async def test_pages_cover_every_alert_once_newest_first(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    created = [await insert_alert(pool) for _ in range(7)]

    seen: list[int] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/api/v1/alerts", params=params)).json()
        seen += [a["id"] for a in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == sorted(created, reverse=True)


async def test_last_full_page_has_no_next_cursor(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    for _ in range(4):
        await insert_alert(pool)

    body = (await client.get("/api/v1/alerts", params={"limit": 4})).json()

    assert len(body["items"]) == 4
    assert body["next_cursor"] is None


async def test_pages_keep_the_filter(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    opened = []
    for i in range(6):
        status = "open" if i % 2 == 0 else "resolved"
        alert_id = await insert_alert(pool, status=status)
        if status == "open":
            opened.append(alert_id)

    first = (await client.get("/api/v1/alerts", params={"status": "open", "limit": 2})).json()
    rest = (
        await client.get(
            "/api/v1/alerts", params={"status": "open", "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()

    assert [a["id"] for a in first["items"] + rest["items"]] == sorted(opened, reverse=True)
    assert rest["next_cursor"] is None


async def test_filters_select_by_status_kind_pollutant_vehicle_and_segment(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    open_pm25 = await insert_alert(pool, vehicles=["wt-01", "wt-02"], segment_id=501)
    acked_no2 = await insert_alert(pool, status="acknowledged", pollutant="no2", vehicles=["wt-02"])
    resolved = await insert_alert(pool, status="resolved", vehicles=["wt-03"])
    emergency = await insert_alert(pool, kind="emergency", pollutant="so2", vehicles=["em-1"])

    assert await ids(client, {"status": "resolved"}) == [resolved]
    assert await ids(client, [("status", "open"), ("status", "acknowledged")]) == [
        emergency,
        acked_no2,
        open_pm25,
    ]
    assert await ids(client, {"kind": "emergency"}) == [emergency]
    assert await ids(client, {"pollutant": "no2"}) == [acked_no2]
    assert await ids(client, {"vehicle": "wt-02"}) == [acked_no2, open_pm25]
    assert await ids(client, {"segment": 501}) == [open_pm25]
    assert await ids(client, {"vehicle": "wt-02", "pollutant": "pm25"}) == [open_pm25]
    assert await ids(client, {"vehicle": "nobody"}) == []


async def test_filters_select_by_confidence_stale_resolution_and_stretch(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    suspected = await insert_alert(
        pool, confidence="suspected", segment_id=701, segments=[700, 701, 702]
    )
    stale = await insert_alert(pool, stale_since=T0 + timedelta(days=8))
    verified = await insert_alert(pool, status="resolved", resolution="verified")
    assert await ids(client, {"confidence": "suspected"}) == [suspected]
    assert suspected not in await ids(client, {"confidence": "confirmed"})
    assert await ids(client, {"stale": "true"}) == [stale]
    assert stale not in await ids(client, {"stale": "false"})
    assert await ids(client, {"resolution": "verified"}) == [verified]
    # Any segment of the stretch finds the alert, not only the latest one.
    assert await ids(client, {"segment": 700}) == [suspected]
    one = (await client.get(f"/api/v1/alerts/{suspected}")).json()
    assert (one["segments"], one["confidence"], one["stale_since"]) == (
        [700, 701, 702],
        "suspected",
        None,
    )
    assert (await client.get("/api/v1/alerts", params={"confidence": "maybe"})).status_code == 422


async def test_an_officer_resolution_is_recorded_as_such_and_high_emitters_need_a_note(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    alert_id = await insert_alert(pool)
    r = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={})
    assert (r.status_code, r.json()["resolution"]) == (200, "officer")
    plate = await insert_alert(
        pool, kind="remote_sensing", subject="plate:TEST", rule="high_emitter"
    )
    r = await client.post(f"/api/v1/alerts/{plate}/resolve", json={"note": "  "})
    assert r.status_code == 422, r.text
    r = await client.post(f"/api/v1/alerts/{plate}/resolve", json={"note": "plate re-tested"})
    assert (r.status_code, r.json()["resolution"]) == (200, "officer")


async def test_time_window_selects_episodes_overlapping_it(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    h = timedelta(hours=1)
    early = await insert_alert(pool, first_seen=T0, last_seen=T0 + h)
    spanning = await insert_alert(pool, first_seen=T0, last_seen=T0 + 5 * h)
    late = await insert_alert(pool, first_seen=T0 + 3 * h, last_seen=T0 + 4 * h)

    window = {"since": (T0 + 2 * h).isoformat(), "until": (T0 + 3 * h).isoformat()}
    assert await ids(client, window) == [spanning]
    assert await ids(client, {"since": (T0 + h).isoformat()}) == [late, spanning, early]
    assert await ids(client, {"until": (T0 + 3 * h).isoformat()}) == [spanning, early]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "YWxlcnRzOi0x"},  # "alerts:-1"
        {"limit": 0},
        {"limit": 501},
        {"status": "closed"},
        {"kind": "bicycle"},
        {"since": "2025-06-01T08:00:00"},  # no UTC offset
        {"since": "2025-06-01T09:00:00Z", "until": "2025-06-01T08:00:00Z"},
        {"colour": "red"},
    ],
)
async def test_bad_listing_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await client.get("/api/v1/alerts", params=params)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid"


async def test_get_returns_the_alert(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    alert_id = await insert_alert(pool, pollutant="o3", details={"pass_readings": 12})

    body = (await client.get(f"/api/v1/alerts/{alert_id}")).json()

    assert body["id"] == alert_id
    assert body["pollutant"] == "o3"
    assert body["status"] == "open"
    assert body["details"] == {"pass_readings": 12}
    assert body["vehicles"] == ["wt-01"]


async def test_acknowledge_then_resolve_records_the_accounts_whatever_the_body_says(
    client: httpx.AsyncClient, officer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    alert_id = await insert_alert(pool)

    acked = await officer_client.post(
        f"/api/v1/alerts/{alert_id}/ack", json={"by": "officer.li", "note": "crew sent"}
    )
    resolved = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "officer.wang"})

    assert acked.status_code == 200
    a = acked.json()
    assert (a["status"], a["acknowledged_by"], a["ack_note"]) == (
        "acknowledged",
        "test-officer",
        "crew sent",
    )
    assert a["acknowledged_at"] is not None
    assert a["resolved_at"] is None
    assert resolved.status_code == 200
    r = resolved.json()
    assert (r["status"], r["resolved_by"], r["resolve_note"]) == ("resolved", "test-admin", None)
    assert r["resolved_at"] is not None
    assert r["acknowledged_by"] == "test-officer"
    stored = await pool.fetchrow("SELECT status, resolved_by FROM alerts WHERE id = $1", alert_id)
    assert tuple(stored) == ("resolved", "test-admin")


async def test_acknowledging_needs_no_body(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    alert_id = await insert_alert(pool)

    without = await client.post(f"/api/v1/alerts/{alert_id}/ack")
    empty = await client.post(f"/api/v1/alerts/{await insert_alert(pool)}/ack", json={})

    assert without.status_code == 200, without.text
    assert empty.status_code == 200, empty.text
    assert without.json()["acknowledged_by"] == "test-admin"


async def test_open_alert_can_be_resolved_without_acknowledgement(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    alert_id = await insert_alert(pool)

    response = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "ops"})

    assert response.status_code == 200
    assert response.json()["acknowledged_by"] is None


@pytest.mark.parametrize(
    ("status", "action"),
    [("acknowledged", "ack"), ("resolved", "ack"), ("resolved", "resolve")],
)
async def test_transition_from_wrong_state_is_409(
    client: httpx.AsyncClient, pool: asyncpg.Pool, status: str, action: str
) -> None:
    alert_id = await insert_alert(pool, status=status)

    response = await client.post(f"/api/v1/alerts/{alert_id}/{action}", json={"by": "ops"})

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict"
    assert status in body["detail"]
    assert await pool.fetchval("SELECT status FROM alerts WHERE id = $1", alert_id) == status


async def test_concurrent_acknowledgements_have_exactly_one_winner(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    alert_id = await insert_alert(pool)

    responses = await asyncio.gather(
        *(
            client.post(f"/api/v1/alerts/{alert_id}/ack", json={"by": f"officer-{i}"})
            for i in range(6)
        )
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409, 409, 409, 409, 409]
    winner = next(r.json()["acknowledged_by"] for r in responses if r.status_code == 200)
    assert (
        await pool.fetchval("SELECT acknowledged_by FROM alerts WHERE id = $1", alert_id) == winner
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("POST", "/ack"), ("POST", "/resolve")],
)
async def test_unknown_alert_is_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, f"/api/v1/alerts/999999{path}", json={"by": "ops"})

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "alert 999999 does not exist"}


@pytest.mark.parametrize("body", [{"by": ""}, {"by": "   "}, {"by": "ops", "extra": 1}])
async def test_transition_with_an_empty_name_or_an_unknown_field_is_422(
    client: httpx.AsyncClient, pool: asyncpg.Pool, body: dict[str, Any]
) -> None:
    alert_id = await insert_alert(pool)

    response = await client.post(f"/api/v1/alerts/{alert_id}/ack", json=body)

    assert response.status_code == 422
    assert await pool.fetchval("SELECT status FROM alerts WHERE id = $1", alert_id) == "open"
