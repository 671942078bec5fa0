"""Alerts an officer can trust, through the real broker, PostgreSQL and the HTTP API: a plume
uploaded late opens one alert for its stretch that stays open (no closing by silence), goes
stale while nobody re-drives it, and is resolved by verification once later clean passes over
the stretch come back; one drive makes it suspected, a second vehicle confirms it. The pure
verification rule is tested with literal values."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, eventually, grant_token, publish

from api.app import create_app
from telemetry.alerts.episodes import sweep_alerts
from telemetry.alerts.verification import CleanPass, fold_passes
from telemetry.roads.importer import import_roads
from telemetry.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
S = 1_000_000


# --- the pure rule ----------------------------------------------------------------------------


def _clean(vehicle: str, first_s: int, segment: int = 1, mean: float = 20.0) -> CleanPass:
    return CleanPass(vehicle, segment, "pm25", first_s * S, (first_s + 3) * S, mean, 4)


def test_clean_passes_after_the_plume_count_once_per_drive():
    last_seen = 1000 * S
    v = fold_passes({}, [_clean("a", 900)], last_seen_us=last_seen, drive_gap_s=600)
    assert v == {}  # measured before the plume: a late upload verifies nothing
    v = fold_passes(
        {},
        [_clean("a", 1100, 1), _clean("a", 1104, 2, mean=30.0)],
        last_seen_us=last_seen,
        drive_gap_s=600,
    )
    # Two segments of the stretch on one drive: one verifying drive.
    assert (v["drives"], len(v["passes"])) == (1, 2)
    assert v["after"] == {"mean": 25.0, "max_pass_mean": 30.0}
    again = fold_passes(v, [_clean("a", 1100, 1)], last_seen_us=last_seen, drive_gap_s=600)
    assert again == v  # the same pass judged twice changes nothing
    v = fold_passes(
        v, [_clean("a", 2000), _clean("b", 1101)], last_seen_us=last_seen, drive_gap_s=600
    )
    assert v["drives"] == 3  # the same vehicle a drive gap later, and another vehicle
    assert v["last_pass_at"].startswith("1970-01-01T00:33:23")


# --- through the broker and the API -----------------------------------------------------------


@pytest.fixture
async def service(
    database_url: str, broker: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"verify-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        pass_max_gap_s=2,  # a pass closes once its vehicle is quiet this long
        alert_sweep_s=0.2,  # the periodic sweep runs often during the test
        alert_stale_after_s=24 * 3600,  # nobody re-drove it for a day: stale
    )
    await import_roads(settings, ROOT / "data/roads/demo.geojson", segment_length_m=30)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = bearer(await grant_token(database_url))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            yield client, settings


async def _stretch(database_url: str, length: int) -> list[tuple[int, list[list[float]]]]:
    """``length`` consecutive segments of one road (id, coordinates), in road order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT id, source, road_ref, seq, coords::text AS coords FROM road_segments "
            "WHERE length_m > 20 ORDER BY source, road_ref, seq"
        )
    finally:
        await conn.close()
    for start in range(len(rows) - length + 1):
        run = rows[start : start + length]
        if len({(r["source"], r["road_ref"]) for r in run}) == 1 and [r["seq"] for r in run] == [
            run[0]["seq"] + k for k in range(length)
        ]:
            return [(r["id"], json.loads(r["coords"])) for r in run]
    raise AssertionError("the demo network has no road with enough segments")


def _drive(
    stretch: list[tuple[int, list[list[float]]]], start_ms: int, pm25: float, per_segment: int = 3
) -> list[dict[str, Any]]:
    """Readings 1 s apart along the stretch, ``per_segment`` on each segment."""
    out = []
    for _, coords in stretch:
        (x0, y0), (x1, y1) = coords[0], coords[-1]
        for i in range(per_segment):
            f = (i + 0.5) / per_segment
            out.append(
                {
                    "ts": start_ms + len(out) * 1000,
                    "lat": y0 + (y1 - y0) * f,
                    "lon": x0 + (x1 - x0) * f,
                    "pm25": pm25,
                }
            )
    return out


async def _pm25_alerts(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await client.get(
        "/api/v1/alerts", params={"kind": "walkthrough", "pollutant": "pm25", **params}
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_late_plume_stays_open_goes_stale_and_is_resolved_by_verification(
    service: tuple[httpx.AsyncClient, Settings], broker: Any, database_url: str
) -> None:
    client, settings = service
    stretch = await _stretch(database_url, 3)
    segments = sorted(seg for seg, _ in stretch)
    now_ms = time.time_ns() // 1_000_000
    hour_ms = 3_600_000

    # A vehicle uploads its buffer after a coverage gap: a plume measured 30 hours ago across
    # three segments of one road.
    plume = _drive(stretch, now_ms - 30 * hour_ms, pm25=200.0)
    publish(broker, "telemetry/walkthrough/car-late", [json.dumps(plume)])

    async def whole_stretch() -> dict[str, Any] | None:
        items = await _pm25_alerts(client, segment=segments[0])
        return items[0] if items and items[0]["segments"] == segments else None

    alert = await eventually(whole_stretch)
    # One plume, one alert: the three segments are listed on it, not three alerts.
    assert len(await _pm25_alerts(client)) == 1
    assert alert["rule"] == "pass_screening"
    assert alert["rules"] == ["reference_ratio"]
    assert alert["subject"].startswith("road:")
    assert alert["occurrences"] == 3
    assert alert["peak_ratio"] == pytest.approx(200.0 / 60.0)
    assert alert["peak_multiple"] is None
    assert alert["severity"] == "critical"
    assert alert["confidence"] == "suspected"
    assert [a["id"] for a in await _pm25_alerts(client, confidence="suspected")] == [alert["id"]]
    assert await _pm25_alerts(client, confidence="confirmed") == []

    # No closing by silence: the sweep that used to resolve it 30 minutes after last_seen
    # leaves it open; nobody has measured it for more than a day, so it is marked stale.
    pool = await asyncpg.connect(database_url)
    try:
        resolved, _ = await sweep_alerts(
            pool,
            quiet_period_s=settings.alert_quiet_period_s,
            stale_after_s=settings.alert_stale_after_s,
            now=dt.datetime.now(dt.UTC),
        )
    finally:
        await pool.close()
    assert resolved == 0

    async def stale() -> dict[str, Any] | None:
        items = await _pm25_alerts(client, stale="true")
        return items[0] if items else None

    marked = await eventually(stale)
    assert (marked["id"], marked["status"], marked["resolved_at"]) == (alert["id"], "open", None)
    assert marked["stale_since"] is not None

    # A pass uploaded even later but measured before the plume verifies nothing; a clean drive
    # measured after it is the first verifying drive and clears the stale flag.
    publish(
        broker,
        "telemetry/walkthrough/car-older",
        [json.dumps(_drive(stretch, now_ms - 40 * hour_ms, pm25=15.0))],
    )
    publish(
        broker,
        "telemetry/walkthrough/car-check-1",
        [json.dumps(_drive(stretch, now_ms - 2 * hour_ms, pm25=20.0))],
    )

    async def one_drive() -> dict[str, Any] | None:
        a = (await client.get(f"/api/v1/alerts/{alert['id']}")).json()
        return a if a["verification"].get("drives") == 1 else None

    checked = await eventually(one_drive)
    assert checked["status"] == "open"
    assert checked["stale_since"] is None

    publish(
        broker,
        "telemetry/walkthrough/car-check-2",
        [json.dumps(_drive(stretch, now_ms - hour_ms, pm25=24.0))],
    )

    async def verified() -> dict[str, Any] | None:
        a = (await client.get(f"/api/v1/alerts/{alert['id']}")).json()
        return a if a["status"] == "resolved" else None

    done = await eventually(verified)
    assert (done["resolution"], done["resolved_by"]) == ("verified", "verification")
    assert "verification" in done["resolve_note"]
    v = done["verification"]
    assert v["drives"] == 2 and v["required"] == 2
    assert {p["vehicle_id"] for p in v["passes"]} == {"car-check-1", "car-check-2"}
    assert {p["segment_id"] for p in v["passes"]} <= set(segments)
    assert v["before"]["peak_value"] == pytest.approx(200.0)
    assert v["after"]["mean"] == pytest.approx(22.0)
    listed = await _pm25_alerts(client, resolution="verified")
    assert [a["id"] for a in listed] == [alert["id"]]


async def test_one_drive_is_suspected_and_a_second_vehicle_confirms(
    service: tuple[httpx.AsyncClient, Settings], broker: Any, database_url: str
) -> None:
    client, _ = service
    stretch = await _stretch(database_url, 2)
    now_ms = time.time_ns() // 1_000_000
    publish(
        broker,
        "telemetry/walkthrough/car-a",
        [json.dumps(_drive(stretch[:1], now_ms - 600_000, pm25=150.0, per_segment=4))],
    )

    async def suspected() -> dict[str, Any] | None:
        items = await _pm25_alerts(client, confidence="suspected")
        return items[0] if items else None

    first = await eventually(suspected)
    assert first["vehicles"] == ["car-a"] and first["confirmed_at"] is None

    # Another vehicle drives through the plume on the next segment of the same road.
    publish(
        broker,
        "telemetry/walkthrough/car-b",
        [json.dumps(_drive(stretch[1:], now_ms - 300_000, pm25=160.0, per_segment=4))],
    )

    async def confirmed() -> dict[str, Any] | None:
        items = await _pm25_alerts(client, confidence="confirmed")
        return items[0] if items else None

    a = await eventually(confirmed)
    assert a["id"] == first["id"]
    assert a["vehicles"] == ["car-a", "car-b"]
    assert a["confirmed_at"] is not None
    assert a["segments"] == sorted(seg for seg, _ in stretch)
    assert await _pm25_alerts(client, confidence="suspected") == []
