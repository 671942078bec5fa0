"""The incident API against a real database: open, list, close (409 twice), readings already
stored attach to a new incident, the rapid assessment as data and as GeoJSON, tiers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from telemetry.geo import destination
from telemetry.kinds.emergency.detection import MOLAR_MASS_G_MOL, convert
from telemetry.kinds.emergency.repository import ReadingRows, insert_emergency

SOURCE = (39.99, 116.31)
NOW = datetime.now(UTC).replace(microsecond=0)


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


async def store_readings(pool: asyncpg.Pool, readings: list[dict[str, Any]]) -> None:
    """Store readings (``at``: seconds after NOW, ``distance_m`` / ``bearing_deg`` from the
    source, ``substance``, ``ppm``) as the ingest path would, outside any incident."""
    n = len(readings)
    lat, lon = destination(
        SOURCE[0],
        SOURCE[1],
        [r["bearing_deg"] for r in readings],
        [r["distance_m"] for r in readings],
    )
    ts_us = np.array([int((NOW.timestamp() + r["at"]) * 1e6) for r in readings])
    nan = np.full(n, np.nan)
    sent = np.array([r["ppm"] for r in readings], dtype=float)
    molar_mass = [MOLAR_MASS_G_MOL.get(r["substance"], np.nan) for r in readings]
    value_ppm, value_mgm3 = convert(sent, _objects(["ppm"] * n), molar_mass)
    rows = ReadingRows(
        vehicle_id=_objects(["em-9"] * n),
        ts_us=ts_us,
        received_us=ts_us,
        substance=_objects([r["substance"] for r in readings]),
        value=sent,
        unit=_objects(["ppm"] * n),
        value_ppm=value_ppm,
        value_mgm3=value_mgm3,
        conversion=_objects(["test"] * n),
        sensor=_objects([None] * n),
        lat=lat,
        lon=lon,
        wind_speed_ms=nan,
        wind_dir_deg=nan,
        temp_c=nan,
        pressure_kpa=nan,
        incident_id=np.full(n, -1),
        distance_m=nan,
        bearing_deg=nan,
        extra=_objects([None] * n),
    )
    async with pool.acquire() as conn, conn.transaction():
        assert len(await insert_emergency(conn, rows)) == n


def incident_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "chemical plant fire",
        "lat": SOURCE[0],
        "lon": SOURCE[1],
        "suspected_substances": ["H2S", "so2"],
        "by": "duty-officer",
    } | changes


async def test_officer_opens_lists_and_closes_an_incident_under_their_own_name(
    officer_client: httpx.AsyncClient,
) -> None:
    client = officer_client
    opened = await client.post("/api/v1/incidents", json=incident_body())

    assert opened.status_code == 201
    incident = opened.json()
    assert incident["status"] == "open"
    assert incident["radius_m"] == 5000.0
    assert incident["suspected_substances"] == ["h2s", "so2"]
    assert incident["opened_by"] == "test-officer"  # not the body's "by"
    assert incident["readings"] == 0
    started = datetime.fromisoformat(incident["started_at"])
    assert abs(started - datetime.now(UTC)) < timedelta(minutes=1)

    open_list = (await client.get("/api/v1/incidents", params={"status": "open"})).json()
    assert [i["id"] for i in open_list["items"]] == [incident["id"]]

    closed = await client.post(
        f"/api/v1/incidents/{incident['id']}/close", json={"by": "shift-lead", "note": "all clear"}
    )
    again = await client.post(f"/api/v1/incidents/{incident['id']}/close", json={"by": "x"})

    assert closed.status_code == 200
    assert (closed.json()["status"], closed.json()["closed_by"], closed.json()["note"]) == (
        "closed",
        "test-officer",
        "all clear",
    )
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"
    assert (await client.get("/api/v1/incidents", params={"status": "open"})).json()["items"] == []
    closed_list = (await client.get("/api/v1/incidents", params={"status": "closed"})).json()
    assert [i["id"] for i in closed_list["items"]] == [incident["id"]]
    fetched = (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
    assert fetched["status"] == "closed"


async def test_unknown_incident_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/incidents/424242")).status_code == 404
    closing = await client.post("/api/v1/incidents/424242/close", json={"by": "x"})
    assert closing.status_code == 404
    assert (await client.get("/api/v1/incidents/424242/assessment")).status_code == 404


@pytest.mark.parametrize(
    "change",
    [{"lat": 95.0}, {"radius_m": 0}, {"by": ""}, {"started_at": "2025-06-01T08:00:00"}],
)
async def test_invalid_incident_is_422(client: httpx.AsyncClient, change: dict[str, Any]) -> None:
    response = await client.post("/api/v1/incidents", json=incident_body(**change))

    assert response.status_code == 422


async def test_incidents_page_newest_first(client: httpx.AsyncClient) -> None:
    ids = [
        (await client.post("/api/v1/incidents", json=incident_body(name=f"n{i}"))).json()["id"]
        for i in range(3)
    ]

    first = (await client.get("/api/v1/incidents", params={"limit": 2})).json()
    rest = (
        await client.get(
            "/api/v1/incidents", params={"limit": 2, "before_id": first["next_before_id"]}
        )
    ).json()

    assert [i["id"] for i in first["items"]] == ids[::-1][:2]
    assert [i["id"] for i in rest["items"]] == ids[:1]
    assert rest["next_before_id"] is None


async def test_closing_an_incident_resolves_its_alerts(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    incident = (await client.post("/api/v1/incidents", json=incident_body())).json()
    alert_id = await pool.fetchval(
        "INSERT INTO alerts (kind, subject, pollutant, rule, severity, limit_value, unit, source,"
        " first_seen, last_seen, last_value, peak_value, peak_multiple)"
        " VALUES ('emergency', $1, 'h2s', 'tier:erpg2', 'warning', 30, 'ppm', 'AIHA ERPG-2',"
        " now(), now(), 45, 45, 0.5) RETURNING id",
        f"incident:{incident['id']}",
    )

    await client.post(f"/api/v1/incidents/{incident['id']}/close", json={"by": "shift-lead"})

    alert = (await client.get(f"/api/v1/alerts/{alert_id}")).json()
    assert (alert["status"], alert["resolved_by"]) == ("resolved", "test-admin")
    assert f"incident {incident['id']} closed" in alert["resolve_note"]


PLUME = [
    # north, 300 m: two readings, the later one (by measurement time) is lower
    {"at": -100, "distance_m": 300, "bearing_deg": 359.0, "substance": "h2s", "ppm": 120.0},
    {"at": -50, "distance_m": 320, "bearing_deg": 2.0, "substance": "h2s", "ppm": 40.0},
    # east, 1.5 km and 2.5 km
    {"at": -80, "distance_m": 1500, "bearing_deg": 90.0, "substance": "h2s", "ppm": 35.0},
    {"at": -70, "distance_m": 2500, "bearing_deg": 91.0, "substance": "h2s", "ppm": 12.0},
    # south, 4 km: clean
    {"at": -60, "distance_m": 4000, "bearing_deg": 180.0, "substance": "h2s", "ppm": 0.05},
    # VOC by PID, no tiers and no molar mass
    {"at": -40, "distance_m": 600, "bearing_deg": 45.0, "substance": "voc", "ppm": 7.5},
]


async def test_opening_an_incident_attaches_readings_already_stored_in_its_radius_and_window(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await store_readings(
        pool,
        [
            *PLUME,
            {"at": -900, "distance_m": 300, "bearing_deg": 0.0, "substance": "h2s", "ppm": 9.0},
            {"at": -30, "distance_m": 7000, "bearing_deg": 0.0, "substance": "h2s", "ppm": 9.0},
        ],
    )
    started = (NOW - timedelta(seconds=600)).isoformat()

    incident = (
        await client.post("/api/v1/incidents", json=incident_body(started_at=started))
    ).json()

    # Neither the reading from before the start nor the one 7 km away belongs to it.
    assert incident["readings"] == len(PLUME)
    rows = await pool.fetch(
        "SELECT distance_m, bearing_deg FROM emergency_readings WHERE incident_id = $1 ORDER BY ts",
        incident["id"],
    )
    assert rows[0]["distance_m"] == pytest.approx(300, abs=0.5)
    assert rows[0]["bearing_deg"] == pytest.approx(359.0, abs=0.01)


async def test_assessment_bins_readings_by_ring_and_sector_with_tiers_and_reach(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await store_readings(pool, PLUME)
    started = (NOW - timedelta(seconds=600)).isoformat()
    incident = (
        await client.post("/api/v1/incidents", json=incident_body(started_at=started))
    ).json()

    response = await client.get(f"/api/v1/incidents/{incident['id']}/assessment")

    assert response.status_code == 200
    body = response.json()
    assert body["rings_km"] == [0.0, 0.5, 1.0, 2.0, 3.0, 5.0]
    assert (body["sectors"], body["sector_width_deg"], body["readings"]) == (16, 22.5, 6)
    h2s, voc = body["substances"]
    assert (h2s["substance"], h2s["unit"], h2s["readings"]) == ("h2s", "ppm", 5)
    assert (h2s["max"], h2s["latest"], h2s["worst_tier"], h2s["severity"]) == (
        120.0,
        40.0,
        "erpg3",
        "critical",
    )
    assert h2s["farthest_exceeding_m"] == pytest.approx(2500, abs=0.5)
    cells = {(c["ring"], c["sector_name"]): c for c in h2s["cells"]}
    assert set(cells) == {(0, "N"), (2, "E"), (3, "E"), (4, "S")}
    north = cells[(0, "N")]
    assert (north["readings"], north["max"], north["latest"], north["worst_tier"]) == (
        2,
        120.0,
        40.0,
        "erpg3",
    )
    assert (north["from_deg"], north["to_deg"]) == (348.75, 11.25)
    assert cells[(4, "S")]["worst_tier"] is None
    reach = {t["tier"]: t for t in h2s["tiers"]}
    assert set(reach) == {"erpg1", "occupational", "rel", "erpg2", "erpg3"}
    assert reach["erpg2"]["sector_names"] == ["N", "E"]
    assert reach["erpg2"]["farthest_m"] == pytest.approx(1500, abs=0.5)
    assert reach["erpg3"]["sector_names"] == ["N"]
    assert reach["rel"]["farthest_m"] == pytest.approx(2500, abs=0.5)
    assert (voc["substance"], voc["worst_tier"], voc["tiers"]) == ("voc", None, [])

    coarse = (
        await client.get(
            f"/api/v1/incidents/{incident['id']}/assessment",
            params={"rings_km": "1,5", "sectors": 4, "substance": "H2S"},
        )
    ).json()
    [only] = coarse["substances"]
    assert {(c["ring"], c["sector_name"]) for c in only["cells"]} == {(0, "N"), (1, "E"), (1, "S")}


async def test_assessment_geojson_has_the_source_and_one_polygon_per_cell(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await store_readings(pool, PLUME)
    started = (NOW - timedelta(seconds=600)).isoformat()
    incident = (
        await client.post("/api/v1/incidents", json=incident_body(started_at=started))
    ).json()

    geo = (await client.get(f"/api/v1/incidents/{incident['id']}/assessment.geojson")).json()

    assert geo["type"] == "FeatureCollection"
    source, *cells = geo["features"]
    assert source["geometry"] == {"type": "Point", "coordinates": [SOURCE[1], SOURCE[0]]}
    assert source["properties"]["feature"] == "source"
    assert source["properties"]["id"] == incident["id"]
    assert len(cells) == 5  # four h2s cells and one voc cell
    north = next(
        f
        for f in cells
        if f["properties"]["substance"] == "h2s" and f["properties"]["sector_name"] == "N"
    )
    assert north["geometry"]["type"] == "Polygon"
    ring = north["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]
    assert [SOURCE[1], SOURCE[0]] in ring  # the innermost ring is a wedge from the source
    assert (north["properties"]["max"], north["properties"]["worst_tier"]) == (120.0, "erpg3")
    assert north["properties"]["ring_km"] == [0.0, 0.5]


@pytest.mark.parametrize(
    "params", [{"rings_km": "2,1"}, {"rings_km": "a,b"}, {"rings_km": "0,1"}, {"sectors": 0}]
)
async def test_assessment_with_bad_rings_or_sectors_is_422(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    incident = (await client.post("/api/v1/incidents", json=incident_body())).json()

    response = await client.get(f"/api/v1/incidents/{incident['id']}/assessment", params=params)

    assert response.status_code == 422


async def test_tiers_and_substances_say_where_values_come_from(
    client: httpx.AsyncClient,
) -> None:
    tiers = (await client.get("/api/v1/emergency/tiers")).json()
    substances = {s["name"]: s for s in (await client.get("/api/v1/emergency/substances")).json()}

    by_key = {(t["substance"], t["tier"]): t for t in tiers}
    assert by_key[("h2s", "erpg2")]["confirmed"] is True
    assert by_key[("h2s", "occupational")]["confirmed"] is False
    assert "UNCONFIRMED" in by_key[("h2s", "occupational")]["note"]
    assert by_key[("nh3", "idlh")]["limit_value"] == 300.0
    # AEGL-2 (100 ppm) lies above the IDLH (50 ppm): it alerts as critical.
    assert by_key[("hcl", "aegl2")]["severity"] == "warning"
    assert by_key[("hcl", "aegl2")]["alert_severity"] == "critical"
    assert all(t["source"] for t in tiers)
    assert substances["h2s"]["molar_mass_g_mol"] == 34.08
    assert substances["voc"]["molar_mass_g_mol"] is None
    assert "isobutylene" in substances["voc"]["note"]
