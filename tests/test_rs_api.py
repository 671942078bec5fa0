"""The remote-sensing API against a real database: passes committed by the pipeline itself
(as the ingest worker commits them), then read over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from telemetry.alerts.episodes import record_exceedances
from telemetry.kinds.contract import KindRows
from telemetry.kinds.remote_sensing.pipeline import RemoteSensingPipeline
from telemetry.kinds.remote_sensing.record import RemoteSensingRecord
from telemetry.roads.importer import import_roads
from telemetry.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HOUR_MS = 3_600_000


@pytest.fixture
async def settings(database_url: str) -> Settings:
    s = Settings(database_url=database_url, ingest_enabled=False)
    await import_roads(s, ROOT / "data/roads/demo.geojson", segment_length_m=30)
    return s


def a_pass(ts_ms: int, plate: str, **overrides: Any) -> dict[str, Any]:
    """A valid pass at site A110108001 on 知行路 of the demo network."""
    return {
        "ts": ts_ms,
        "lat": 39.98301,
        "lon": 116.3152,
        "site_id": "A110108001",
        "plate": plate,
        "plate_color": 1,
        "fuel_type": "diesel",
        "speed_kmh": 30.0,
        "accel_ms2": 0.3,
        "slope_pct": 0.5,
        "temp_c": 18.0,
        "wind_speed_ms": 1.5,
        "no_ppm": 300.0,
        "opacity_pct": 10.0,
        **overrides,
    }


async def ingest(pool: asyncpg.Pool, settings: Settings, passes: list[dict[str, Any]]) -> None:
    """Commit ``passes`` the way the ingest worker does: one transaction, alerts included."""
    pipeline = RemoteSensingPipeline(settings)
    await pipeline.refresh(pool)
    rows = KindRows()
    for p in passes:
        rows.records.append(msgspec.convert(p, RemoteSensingRecord))
        rows.vehicle_id.append("rs-api")
        rows.received_us.append(time.time_ns() // 1000)
        rows.extras.append(None)
    batch = pipeline.to_batch(rows)
    async with pool.acquire() as conn, conn.transaction():
        outcome = await pipeline.commit(conn, batch, now_us=time.time_ns() // 1000)
        await record_exceedances(conn, outcome.exceedances)


@pytest.fixture
async def measured(pool: asyncpg.Pool, settings: Settings) -> int:
    """Three hours of passes: 京A (opacity over twice), 京B (NO over twice, gasoline), 京C
    (opacity over once), an invalid downhill pass and one without a plate."""
    now = time.time_ns() // 1_000_000
    await ingest(
        pool,
        settings,
        [
            a_pass(now - 3 * HOUR_MS, "京A10001", opacity_pct=55.0),
            a_pass(now - 2 * HOUR_MS, "京A10001", opacity_pct=60.0),
            a_pass(now - 170 * 60_000, "京B20002", fuel_type="gasoline", no_ppm=2000.0),
            a_pass(now - 150 * 60_000, "京B20002", fuel_type="gasoline", no_ppm=2500.0),
            a_pass(now - 100 * 60_000, "京C30003", opacity_pct=40.0, plate_color=4),
            a_pass(now - 90 * 60_000, "京C30003", slope_pct=-1.0, opacity_pct=80.0),
            a_pass(now - 60 * 60_000, "京D40004", plate_color_scheme="jtt808", plate_color=9),
            a_pass(now - 30 * 60_000, None),
        ],
    )
    return now


async def test_plate_history_shows_validity_exceedances_and_high_emitter_evidence(
    client: httpx.AsyncClient, measured: int
) -> None:
    r = await client.get("/api/v1/plates/京a-10001")

    assert r.status_code == 200
    body = r.json()
    assert body["plate"] == "京A10001"
    assert body["high_emitter"] is True
    [status] = body["statuses"]
    assert status["pollutant"] == "opacity"
    assert status["current"] is True
    assert status["limit_value"] == 30.0
    assert [e["value"] for e in status["evidence"]] == [55.0, 60.0]
    assert [p["opacity_pct"] for p in body["passes"]] == [60.0, 55.0]
    assert all(p["exceeded"] == ["opacity"] and p["valid"] for p in body["passes"])
    assert body["passes"][0]["plate_colour"] == "yellow"
    assert body["passes"][0]["segment_id"] is not None


async def test_an_invalid_pass_is_listed_with_its_reason_and_confirms_nothing(
    client: httpx.AsyncClient, measured: int
) -> None:
    body = (await client.get("/api/v1/plates/京C30003")).json()

    assert body["high_emitter"] is False
    assert body["statuses"] == []
    invalid, valid = body["passes"]
    assert (invalid["valid"], invalid["invalid_reason"], invalid["exceeded"]) == (
        False,
        "downhill",
        [],
    )
    assert (valid["valid"], valid["exceeded"], valid["plate_colour"]) == (
        True,
        ["opacity"],
        "green",
    )


async def test_an_unknown_plate_colour_code_keeps_the_code(
    client: httpx.AsyncClient, measured: int
) -> None:
    [p] = (await client.get("/api/v1/plates/京D40004")).json()["passes"]

    assert (p["plate_color_scheme"], p["plate_color_code"], p["plate_colour"]) == (
        "jtt808",
        "9",
        None,
    )


async def test_a_plate_never_measured_is_not_found(
    client: httpx.AsyncClient, measured: int
) -> None:
    r = await client.get("/api/v1/plates/京Z99999")

    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


async def test_high_emitters_filter_and_page(client: httpx.AsyncClient, measured: int) -> None:
    everyone = (await client.get("/api/v1/high-emitters")).json()
    diesel = (await client.get("/api/v1/high-emitters", params={"fuel_type": "diesel"})).json()
    no = (await client.get("/api/v1/high-emitters", params={"pollutant": "no"})).json()
    first = (await client.get("/api/v1/high-emitters", params={"limit": 1})).json()
    second = (
        await client.get(
            "/api/v1/high-emitters", params={"limit": 1, "cursor": first["next_cursor"]}
        )
    ).json()

    # Latest confirmation first: 京A at -120 min, 京B at -150 min.
    assert [(h["plate"], h["pollutant"]) for h in everyone["items"]] == [
        ("京A10001", "opacity"),
        ("京B20002", "no"),
    ]
    assert everyone["next_cursor"] is None
    assert [h["plate"] for h in diesel["items"]] == ["京A10001"]
    assert [h["plate"] for h in no["items"]] == ["京B20002"]
    assert [h["plate"] for h in first["items"] + second["items"]] == ["京A10001", "京B20002"]
    assert second["next_cursor"] is None


async def test_a_bad_cursor_or_filter_is_refused(client: httpx.AsyncClient, measured: int) -> None:
    cursor = await client.get("/api/v1/high-emitters", params={"cursor": "bm90LWEtY3Vyc29y"})
    fuel = await client.get("/api/v1/high-emitters", params={"fuel_type": "kerosene"})

    assert cursor.status_code == 422
    assert cursor.json()["error"] == "invalid"
    assert fuel.status_code == 422


async def test_site_statistics_give_valid_share_and_exceedance_rates(
    client: httpx.AsyncClient, measured: int
) -> None:
    r = await client.get("/api/v1/remote-sensing/stats", params={"by": "site"})

    [site] = r.json()["items"]
    assert site["site_id"] == "A110108001"
    assert (site["passes"], site["valid"], site["exceeding"]) == (8, 7, 5)
    assert site["valid_share"] == pytest.approx(7 / 8)
    assert site["exceedance_rate"] == pytest.approx(5 / 7)
    # Diesel opacity judged on 京A ×2, 京C, 京D and the unplated pass; gasoline has no limit.
    assert site["pollutants"]["opacity"] == {"judged": 5, "exceeded": 3, "rate": 0.6}
    assert site["pollutants"]["no"] == {"judged": 7, "exceeded": 2, "rate": pytest.approx(2 / 7)}
    assert site["pollutants"]["co"] == {"judged": 0, "exceeded": 0, "rate": None}


async def test_segment_statistics_and_window_limits(
    client: httpx.AsyncClient, measured: int
) -> None:
    by_segment = (await client.get("/api/v1/remote-sensing/stats", params={"by": "segment"})).json()
    [segment] = by_segment["items"]
    one = await client.get(
        "/api/v1/remote-sensing/stats",
        params={"by": "segment", "segment": segment["segment_id"]},
    )
    too_wide = await client.get(
        "/api/v1/remote-sensing/stats",
        params={"since": "2024-01-01T00:00:00+08:00", "until": "2025-06-01T00:00:00+08:00"},
    )
    earlier = await client.get(
        "/api/v1/remote-sensing/stats",
        params={"since": "2024-01-01T00:00:00+08:00", "until": "2024-02-01T00:00:00+08:00"},
    )

    assert segment["passes"] == 8
    assert one.json()["items"] == by_segment["items"]
    assert too_wide.status_code == 422
    assert earlier.json()["items"] == []
