"""What the duty officer's map needs of ``GET /alerts``: street names and points, the rule and
severity filters, and most-severe-first pages."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from test_api_alerts import ids, insert_alert


async def insert_segment(
    pool: asyncpg.Pool, coords: list[list[float]], name: str | None = None, ref: str = "r1"
) -> int:
    lons = [c[0] for c in coords]
    lats = [c[1] for c in coords]
    segment_id: int = await pool.fetchval(
        "INSERT INTO road_segments (source, road_ref, seq, name, length_m, coords,"
        " min_lon, min_lat, max_lon, max_lat)"
        " VALUES ('test', $1, (SELECT count(*) FROM road_segments), $2, 100, $3::jsonb,"
        " $4, $5, $6, $7) RETURNING id",
        ref,
        name,
        coords,
        min(lons),
        min(lats),
        max(lons),
        max(lats),
    )
    return segment_id


async def alert(client: httpx.AsyncClient, alert_id: int) -> dict[str, Any]:
    response = await client.get(f"/api/v1/alerts/{alert_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_alert_names_its_street_and_a_point(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    two = await insert_segment(pool, [[116.0, 39.0], [116.002, 39.002]], "长安街")
    three = await insert_segment(pool, [[116.1, 39.1], [116.2, 39.2], [116.3, 39.3]], None)
    named = await insert_alert(pool, segment_id=two, segments=[two])
    unnamed = await insert_alert(pool, segment_id=three, segments=[three])
    stretch = await insert_alert(pool, segment_id=three, segments=[two, three])
    nowhere = await insert_alert(pool, segment_id=None, segments=[])

    first = await alert(client, named)
    assert first["street"] == "长安街"
    assert first["point"] == {"lon": pytest.approx(116.001), "lat": pytest.approx(39.001)}
    second = await alert(client, unnamed)
    assert second["street"] is None
    assert second["point"] == {"lon": pytest.approx(116.2), "lat": pytest.approx(39.2)}
    assert (await alert(client, stretch))["street"] == "长安街"
    third = await alert(client, nowhere)
    assert third["street"] is None and third["point"] is None

    listed = (await client.get("/api/v1/alerts", params={"limit": 10})).json()["items"]
    assert {a["id"]: a["street"] for a in listed}[named] == "长安街"


async def test_an_acknowledged_alert_keeps_its_street(
    officer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    segment = await insert_segment(pool, [[116.0, 39.0], [116.002, 39.002]], "Ring Road")
    alert_id = await insert_alert(pool, segment_id=segment, segments=[segment])
    response = await officer_client.post(f"/api/v1/alerts/{alert_id}/ack")
    assert response.status_code == 200, response.text
    assert response.json()["street"] == "Ring Road"


async def test_rule_filter_matches_the_rule_or_any_rule_that_fired(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    limit = await insert_alert(pool, rule="limit")
    screened = await insert_alert(pool, rule="pass_screening", rules=["hotspot", "reference_ratio"])
    other = await insert_alert(pool, rule="pass_screening", rules=["fixed_point_trigger"])

    assert await ids(client, {"rule": "limit"}) == [limit]
    assert await ids(client, {"rule": "hotspot"}) == [screened]
    assert await ids(client, {"rule": "pass_screening"}) == [other, screened]


async def test_severity_filter(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    info = await insert_alert(pool, severity="info")
    await insert_alert(pool, severity="warning")
    critical = await insert_alert(pool, severity="critical")

    assert await ids(client, {"severity": "critical"}) == [critical]
    assert await ids(client, [("severity", "critical"), ("severity", "info")]) == [critical, info]
    response = await client.get("/api/v1/alerts", params={"severity": "loud"})
    assert response.status_code == 422


async def test_most_severe_first_pages_cover_every_alert_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    made = {
        severity: [await insert_alert(pool, severity=severity) for _ in range(3)]
        for severity in ("warning", "critical", "info")
    }
    expected = [
        *sorted(made["critical"], reverse=True),
        *sorted(made["warning"], reverse=True),
        *sorted(made["info"], reverse=True),
    ]

    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"order": "severity", "limit": 2}
        body = (
            await client.get(
                "/api/v1/alerts", params=params | ({"cursor": cursor} if cursor else {})
            )
        ).json()
        seen += [a["id"] for a in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert await ids(client, {}) == sorted(expected, reverse=True)


async def test_a_newest_cursor_is_not_a_severity_cursor(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    for _ in range(2):
        await insert_alert(pool)
    cursor = (await client.get("/api/v1/alerts", params={"limit": 1})).json()["next_cursor"]
    response = await client.get("/api/v1/alerts", params={"order": "severity", "cursor": cursor})
    assert response.status_code == 422
