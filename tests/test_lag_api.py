"""Analyser lags against the real database: registering them over the API (admins) and the
command line, their audit trail, and estimating one from a recorded drive with
``telemetry vehicles lag estimate`` (docs/domain.md §5.8)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import numpy as np
import pytest

from telemetry.cli import main
from telemetry.geo import from_local_m
from telemetry.store.lags import load_lags

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture
async def wt1(pool: asyncpg.Pool) -> None:
    """Vehicle wt-1 has sent data (lags of an unknown vehicle are refused: 404)."""
    await pool.execute(
        "INSERT INTO vehicles (vehicle_id, kind, last_ts, last_lat, last_lon, last_received_at,"
        " readings) VALUES ('wt-1', 'walkthrough', now(), 24.5, 118.1, now(), 1)"
    )


async def test_an_admin_registers_lags_and_anyone_reads_them(
    wt1: None, client: httpx.AsyncClient, viewer_client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    put = await client.put("/api/v1/vehicles/wt-1/lags", json={"lags_s": {"no2": 12.5, "co": 8}})
    got = await viewer_client.get("/api/v1/vehicles/wt-1/lags")

    assert put.status_code == 200, put.text
    assert put.json() == got.json()
    rows = {r["pollutant"]: r for r in got.json()}
    assert sorted(rows) == ["co", "no2"]
    assert rows["no2"]["lag_s"] == 12.5
    assert rows["no2"]["method"] == "registered"
    assert rows["no2"]["set_by"] == "test-admin"
    assert rows["no2"]["estimated_from"] is None
    assert await load_lags(pool, ["wt-1", "wt-2"]) == {"wt-1": {"co": 8.0, "no2": 12.5}}


async def test_a_lag_changed_or_removed_keeps_its_history_in_the_audit_log(
    wt1: None, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await client.put("/api/v1/vehicles/wt-1/lags", json={"lags_s": {"no2": 12.5}})
    await client.put("/api/v1/vehicles/wt-1/lags", json={"lags_s": {"no2": 10.0}})
    removed = await client.put("/api/v1/vehicles/wt-1/lags", json={"lags_s": {"no2": None}})

    assert removed.json() == []
    audit = await pool.fetch(
        "SELECT action, before->>'lag_s' AS before, after->>'lag_s' AS after FROM audit_log"
        " WHERE entity = 'analyser_lag' AND entity_id = 'wt-1/no2' ORDER BY id"
    )
    assert [tuple(r) for r in audit] == [
        ("analyser_lag.set", None, "12.5"),
        ("analyser_lag.set", "12.5", "10.0"),
        ("analyser_lag.delete", "10.0", None),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"lags_s": {"nox": 5}},
        {"lags_s": {"no2": -1}},
        {"lags_s": {"no2": 300}},  # above TELEMETRY_LAG_MAX_S (120 by default)
        {"lags_s": {}},
    ],
)
async def test_an_unknown_pollutant_or_an_impossible_lag_is_refused(
    wt1: None, client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.put("/api/v1/vehicles/wt-1/lags", json=body)

    assert response.status_code == 422, response.text


async def test_only_admins_register_lags(wt1: None, officer_client: httpx.AsyncClient) -> None:
    response = await officer_client.put(
        "/api/v1/vehicles/wt-1/lags", json={"lags_s": {"no2": 12.0}}
    )

    assert response.status_code == 403


def _drive(lag_s: float) -> tuple[list[tuple[object, ...]], float, float]:
    """Readings of a 1 Hz drive east at 10 m/s past a source 20 m off the road, NO2 reported
    ``lag_s`` late; and the source (lon, lat)."""
    t = np.arange(150.0)
    x = -400.0 + 10.0 * t
    lon, lat = from_local_m(x, np.zeros_like(x), 118.0, 24.0)
    src_lon, src_lat = from_local_m(np.array([600.0]), np.array([20.0]), 118.0, 24.0)
    plume = 10.0 + 80.0 * np.exp(-((x - 600.0) ** 2 + 20.0**2) / (2 * 40.0**2))
    no2 = np.interp(t - lag_s, t, plume, left=10.0) + 0.5 * np.sin(1.7 * t)
    rows = [
        (T0 + timedelta(seconds=float(s)), float(a), float(o), float(v))
        for s, a, o, v in zip(t, lat, lon, no2, strict=True)
    ]
    return rows, float(src_lon[0]), float(src_lat[0])


async def _store_drive(database_url: str, rows: list[tuple[object, ...]]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO walkthrough_readings (vehicle_id, ts, received_at, lat, lon, no2)"
            " VALUES ('wt-lag', $1, $1, $2, $3, $4)",
            rows,
        )
    finally:
        await conn.close()


async def _lag_rows(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            "SELECT pollutant, lag_s, method, estimated_from, estimated_to, score,"
            " details::text AS details, set_by FROM analyser_lags WHERE vehicle_id = 'wt-lag'"
        )
    finally:
        await conn.close()


def test_the_estimate_command_finds_a_known_lag_in_a_stored_drive_and_stores_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEMETRY_DATABASE_URL", database_url)
    rows, src_lon, src_lat = _drive(12.0)
    asyncio.run(_store_drive(database_url, rows))
    since, until = T0.isoformat(), (T0 + timedelta(minutes=5)).isoformat()

    source = f"{src_lon},{src_lat}"
    window = ["--from", since, "--to", until]
    status = main(
        [
            "vehicles",
            "lag",
            "estimate",
            "wt-lag",
            "no2",
            "--source",
            source,
            *window,
            "--sigma",
            "40",
        ]
    )

    assert status == 0
    [row] = asyncio.run(_lag_rows(database_url))
    assert row["pollutant"] == "no2" and row["method"] == "estimated"
    assert abs(row["lag_s"] - 12.0) <= 1.0
    assert row["score"] > 0.9
    assert (row["estimated_from"], row["estimated_to"]) == (T0, T0 + timedelta(minutes=5))
    assert row["set_by"].startswith("cli:")
    assert '"source": {"lat"' in row["details"] and '"curve"' in row["details"]
    assert "stored: wt-lag\tno2" in capsys.readouterr().out

    assert main(["vehicles", "lag", "list", "wt-lag"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("wt-lag\tno2\t") and "\testimated\t" in listed


def test_the_set_command_registers_a_lag(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEMETRY_DATABASE_URL", database_url)

    assert main(["vehicles", "lag", "set", "wt-lag", "co", "7.5"]) == 0

    [row] = asyncio.run(_lag_rows(database_url))
    assert (row["pollutant"], row["lag_s"], row["method"]) == ("co", 7.5, "registered")
    assert capsys.readouterr().out == "wt-lag\tco\t7.5 s\tregistered\n"


async def test_lags_and_calibrations_of_an_unknown_vehicle_are_refused(
    client: httpx.AsyncClient,
) -> None:
    put = await client.put("/api/v1/vehicles/nobody/lags", json={"lags_s": {"no2": 12.5}})
    got = await client.get("/api/v1/vehicles/nobody/lags")
    calibrations = await client.get("/api/v1/vehicles/nobody/calibrations")

    assert [put.status_code, got.status_code, calibrations.status_code] == [404, 404, 404]
    assert put.json()["error"] == "not_found"
