"""The emergency assessment relative to the measured wind (docs/domain.md §4.6): the vector
mean wind, sectors relative to the downwind axis, HJ 589's upwind control point, and the
receptor tier (ambient reference values, docs/domain.md §4.5). Literal arrays, then through
the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from telemetry.geo import destination
from telemetry.kinds.emergency.detection import (
    CROSSWIND_LEFT,
    CROSSWIND_RIGHT,
    DOWNWIND,
    MOLAR_MASS_G_MOL,
    UPWIND,
    WIND_SECTORS,
    TierTable,
    assess,
    convert,
    incident_exceedances,
    mean_wind,
    wind_sector_bearings,
    wind_sector_of,
)
from telemetry.kinds.emergency.repository import ReadingRows, insert_emergency

NAN = float("nan")
S = 1_000_000  # µs per second
H2S_M = MOLAR_MASS_G_MOL["h2s"]


def test_wind_from_the_west_blows_east() -> None:
    wind = mean_wind(
        np.array([0, S, 2 * S]), np.array([4.0, 4.0, 4.0]), np.array([270.0, 270.0, 270.0]),
        window_s=900, calm_ms=0.5,
    )  # fmt: skip
    assert (wind.readings, wind.calm) == (3, False)
    assert wind.from_deg == pytest.approx(270.0)
    assert wind.downwind_deg == pytest.approx(90.0)
    assert (wind.speed_ms, wind.mean_speed_ms, wind.steadiness) == pytest.approx((4, 4, 1))


def test_wind_is_a_vector_mean_across_north() -> None:
    # 350° and 10° at 2 m/s average to north (not 180°), at 2·cos 10° m/s.
    wind = mean_wind(
        np.array([0, S]), np.array([2.0, 2.0]), np.array([350.0, 10.0]), window_s=900, calm_ms=0.5
    )
    assert wind.from_deg == pytest.approx(0.0, abs=1e-9) or wind.from_deg == pytest.approx(360.0)
    assert wind.downwind_deg == pytest.approx(180.0)
    assert wind.speed_ms == pytest.approx(2 * np.cos(np.radians(10)))
    assert wind.steadiness == pytest.approx(np.cos(np.radians(10)))


def test_opposite_winds_are_calm_and_old_or_partial_readings_are_left_out() -> None:
    calm = mean_wind(
        np.array([0, S]), np.array([3.0, 3.0]), np.array([90.0, 270.0]), window_s=900, calm_ms=0.5
    )
    assert calm.calm and np.isnan(calm.from_deg) and np.isnan(calm.downwind_deg)

    # The first reading is 1000 s before the latest (outside a 900 s window), the third has no
    # speed: only the second and fourth count, both from 180°.
    wind = mean_wind(
        np.array([0, 990 * S, 995 * S, 1000 * S]),
        np.array([5.0, 2.0, NAN, 2.0]),
        np.array([0.0, 180.0, 90.0, 180.0]),
        window_s=900,
        calm_ms=0.5,
    )
    assert (wind.readings, wind.first_us, wind.last_us) == (2, 990 * S, 1000 * S)
    assert wind.from_deg == pytest.approx(180.0)

    none = mean_wind(np.array([0]), np.array([NAN]), np.array([NAN]), window_s=900, calm_ms=0.5)
    assert none.readings == 0 and not none.calm and np.isnan(none.downwind_deg)


def test_sectors_relative_to_the_downwind_axis() -> None:
    bearings = np.array([90, 135, 136, 180, 225, 270, 0, 44, 45, NAN], dtype=float)
    got = wind_sector_of(bearings, 90.0, downwind_half_deg=45, upwind_half_deg=45)
    D, R, U, L = DOWNWIND, CROSSWIND_RIGHT, UPWIND, CROSSWIND_LEFT
    assert got.tolist() == [D, D, R, R, U, U, L, L, D, -1]
    assert WIND_SECTORS[R] == "crosswind_right"
    # Without an axis nothing has a wind sector.
    assert wind_sector_of(bearings, NAN, downwind_half_deg=45, upwind_half_deg=45).tolist() == (
        [-1] * 10
    )
    assert wind_sector_bearings(90.0, downwind_half_deg=45, upwind_half_deg=30) == [
        (45.0, 135.0), (135.0, 240.0), (240.0, 300.0), (300.0, 45.0),
    ]  # fmt: skip


def _tiers(receptor_severity: str = "info") -> TierTable:
    return TierTable.from_rows(
        [
            {
                "id": 1,
                "substance": "h2s",
                "tier": "erpg1",
                "limit_value": 0.1,
                "unit": "ppm",
                "severity": "info",
                "source": "AIHA",
                "averaging": "60min",
            },
            {
                "id": 2,
                "substance": "h2s",
                "tier": "ambient",
                "limit_value": 10,
                "unit": "ug/m3",
                "severity": receptor_severity,
                "source": "HJ 2.2-2018 Appendix D",
                "averaging": "1h",
                "confirmed": False,
                "receptor": True,
            },
        ],
        MOLAR_MASS_G_MOL,
    )


def _h2s(ppm: list[float]) -> tuple[np.ndarray, np.ndarray]:
    n = len(ppm)
    units = np.empty(n, dtype=object)
    units[:] = ["ppm"] * n
    return convert(np.array(ppm), units, np.full(n, H2S_M))


def test_assessment_by_wind_sector_with_control_and_receptor() -> None:
    # Downwind 500 m: 0.2 ppm; upwind 1000 m: 0.002 ppm (a control reading); upwind 5000 m,
    # beyond the 3000 m control distance: 0.001 ppm (latest).
    ppm, mgm3 = _h2s([0.2, 0.002, 0.001])
    substance = np.array(["h2s"] * 3, dtype=object)
    result = assess(
        substance=substance,
        value_ppm=ppm,
        value_mgm3=mgm3,
        ts_us=np.array([S, 2 * S, 3 * S]),
        distance_m=np.array([500.0, 1000.0, 5000.0]),
        bearing_deg=np.array([90.0, 270.0, 265.0]),
        tiers=_tiers(),
        downwind_deg=90.0,
        control_max_m=3000.0,
    )
    # The receptor tier is no reading's tier: only erpg1 (0.1 ppm) is reached.
    assert result.group_tier.tolist() == [0]
    assert result.wind_sector.tolist() == [DOWNWIND, UPWIND]
    assert result.wind_count.tolist() == [1, 2]
    assert result.wind_max.tolist() == pytest.approx([0.2, 0.002])
    assert result.wind_farthest_m.tolist() == [500.0, 5000.0]
    assert result.wind_tier.tolist() == [0, -1]
    assert (result.control_count.tolist(), result.control_nearest_m.tolist()) == ([1], [1000.0])
    assert result.control_latest.tolist() == pytest.approx([0.002])
    assert result.control_median.tolist() == pytest.approx([0.002])
    # Receptor: 10 µg/m³ = 0.01 mg/m³; 0.2 ppm = 0.2 × 34.08 / 24.45 mg/m³ → C/S 27.88.
    assert result.receptor_tier.tolist() == [1]
    mg = 34.08 / 24.45
    assert result.receptor_max_ratio.tolist() == pytest.approx([0.2 * mg / 0.01])
    assert result.receptor_latest_ratio.tolist() == pytest.approx([0.001 * mg / 0.01])
    assert result.receptor_over.tolist() == [1]


def test_without_wind_there_is_no_wind_sector_and_no_control() -> None:
    ppm, mgm3 = _h2s([0.2])
    result = assess(
        substance=np.array(["h2s"], dtype=object),
        value_ppm=ppm,
        value_mgm3=mgm3,
        ts_us=np.array([S]),
        distance_m=np.array([500.0]),
        bearing_deg=np.array([270.0]),
        tiers=_tiers(),
    )
    assert result.wind_group.shape == (0,)
    assert result.control_count.tolist() == [0]
    assert np.isnan(result.control_nearest_m).all()


def test_a_receptor_tier_raises_no_alert_and_no_severity() -> None:
    tiers = _tiers(receptor_severity="critical")
    # erpg1 keeps its own severity although the (lower) receptor tier says critical.
    assert tiers.severity.tolist() == ["info", "critical"]
    assert tiers.of("h2s").tolist() == [0]
    assert tiers.receptor_of("h2s") == 1 and tiers.receptor_of("nh3") == -1
    # 0.05 ppm is above the receptor value (0.07 mg/m³ > 0.01) but below erpg1: no alert.
    ppm, mgm3 = _h2s([0.05])
    found = incident_exceedances(
        vehicle_id=np.array(["em-1"], dtype=object),
        ts_us=np.array([S]),
        substance=np.array(["h2s"], dtype=object),
        value_ppm=ppm,
        value_mgm3=mgm3,
        incident_id=np.array([1]),
        distance_m=np.array([100.0]),
        bearing_deg=np.array([90.0]),
        tiers=tiers,
    )
    assert found == []


# --- through the API -----------------------------------------------------------------------

SOURCE = (39.99, 116.31)
NOW = datetime.now(UTC).replace(microsecond=0)


async def _store(pool: asyncpg.Pool, readings: list[dict[str, Any]], wind: bool) -> None:
    """H2S readings (``at`` seconds after NOW, ``distance_m`` and ``bearing_deg`` from the
    source, ``ppm``) outside any incident, each with a west wind of 3 m/s when ``wind``."""
    n = len(readings)
    lat, lon = destination(
        SOURCE[0], SOURCE[1], [r["bearing_deg"] for r in readings],
        [r["distance_m"] for r in readings],
    )  # fmt: skip
    ts_us = np.array([int((NOW.timestamp() + r["at"]) * 1e6) for r in readings])
    value_ppm, value_mgm3 = _h2s([r["ppm"] for r in readings])
    nan = np.full(n, np.nan)

    def objects(value: Any) -> np.ndarray:
        out = np.empty(n, dtype=object)
        out[:] = [value] * n
        return out

    rows = ReadingRows(
        vehicle_id=objects("em-7"),
        ts_us=ts_us,
        received_us=ts_us,
        substance=objects("h2s"),
        value=np.array([r["ppm"] for r in readings]),
        unit=objects("ppm"),
        value_ppm=value_ppm,
        value_mgm3=value_mgm3,
        conversion=objects("test"),
        sensor=objects(None),
        lat=lat,
        lon=lon,
        wind_speed_ms=np.full(n, 3.0) if wind else nan,
        wind_dir_deg=np.full(n, 270.0) if wind else nan,
        temp_c=nan,
        pressure_kpa=nan,
        incident_id=np.full(n, -1),
        distance_m=nan,
        bearing_deg=nan,
        extra=objects(None),
    )
    async with pool.acquire() as conn, conn.transaction():
        assert len(await insert_emergency(conn, rows)) == n


READINGS = [
    {"at": -300, "distance_m": 400, "bearing_deg": 90.0, "ppm": 5.0},  # downwind
    {"at": -200, "distance_m": 1500, "bearing_deg": 180.0, "ppm": 0.5},  # crosswind right
    {"at": -100, "distance_m": 800, "bearing_deg": 270.0, "ppm": 0.004},  # upwind: control
    {"at": -50, "distance_m": 4000, "bearing_deg": 265.0, "ppm": 0.003},  # upwind, too far
]


async def _incident(client: httpx.AsyncClient) -> int:
    body = {
        "name": "tank leak",
        "lat": SOURCE[0],
        "lon": SOURCE[1],
        "started_at": (NOW - timedelta(seconds=600)).isoformat(),
        "suspected_substances": ["h2s"],
        "by": "duty-officer",
    }
    response = await client.post("/api/v1/incidents", json=body)
    assert response.status_code == 201, response.text
    incident_id: int = response.json()["id"]
    return incident_id


async def test_assessment_reports_wind_sectors_control_point_and_receptor(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await _store(pool, READINGS, wind=True)
    incident_id = await _incident(client)

    response = await client.get(f"/api/v1/incidents/{incident_id}/assessment")

    assert response.status_code == 200, response.text
    body = response.json()
    wind = body["wind"]
    assert (wind["readings"], wind["calm"], wind["window_s"]) == (4, False, 900.0)
    assert (wind["from_deg"], wind["downwind_deg"], wind["speed_ms"]) == pytest.approx(
        (270.0, 90.0, 3.0)
    )
    assert body["control_point"]["present"] is True
    assert body["control_point"]["substances"] == ["h2s"]
    assert body["lacks_control_point"] is False
    [h2s] = body["substances"]
    sectors = {c["sector"]: c for c in h2s["wind_sectors"]}
    assert set(sectors) == {"downwind", "crosswind_right", "upwind"}
    assert (sectors["downwind"]["readings"], sectors["downwind"]["max"]) == (1, 5.0)
    assert (sectors["downwind"]["from_deg"], sectors["downwind"]["to_deg"]) == (45.0, 135.0)
    assert sectors["downwind"]["worst_tier"] == "erpg1"
    assert (sectors["upwind"]["readings"], sectors["upwind"]["max"]) == (2, 0.004)
    assert sectors["upwind"]["farthest_m"] == pytest.approx(4000, abs=0.5)
    control = h2s["control"]
    assert (control["readings"], control["latest"], control["median"]) == (1, 0.004, 0.004)
    assert control["nearest_m"] == pytest.approx(800, abs=0.5)
    receptor = h2s["receptor"]
    assert (receptor["tier"], receptor["limit_value"], receptor["limit_unit"]) == (
        "ambient",
        10.0,
        "ug/m3",
    )
    assert (receptor["unit"], receptor["limit"], receptor["confirmed"]) == ("mg/m3", 0.01, False)
    mg = 34.08 / 24.45  # mg/m³ per ppm of H2S
    assert receptor["max_ratio"] == pytest.approx(5.0 * mg / 0.01)
    assert receptor["latest_ratio"] == pytest.approx(0.003 * mg / 0.01)
    assert receptor["readings_over"] == 2
    # The receptor tier is not one the readings reach as an alert tier.
    assert "ambient" not in {t["tier"] for t in h2s["tiers"]}

    geo = (await client.get(f"/api/v1/incidents/{incident_id}/assessment.geojson")).json()
    source, axis = geo["features"][:2]
    assert source["properties"]["control_point"]["present"] is True
    assert axis["properties"]["feature"] == "downwind_axis"
    [start, end] = axis["geometry"]["coordinates"]
    assert start == [SOURCE[1], SOURCE[0]]
    assert end[0] > start[0] and end[1] == pytest.approx(start[1], abs=1e-3)  # due east


async def test_assessment_without_wind_lacks_a_control_point(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await _store(pool, READINGS, wind=False)
    incident_id = await _incident(client)

    body = (await client.get(f"/api/v1/incidents/{incident_id}/assessment")).json()

    assert body["wind"]["readings"] == 0 and body["wind"]["downwind_deg"] is None
    assert body["lacks_control_point"] is True
    assert body["control_point"]["reason"] == "no reading measured the wind, so upwind is unknown"
    [h2s] = body["substances"]
    assert (h2s["wind_sectors"], h2s["control"]) == ([], None)
    assert h2s["receptor"]["readings_over"] == 2


async def test_receptor_tiers_are_seeded_and_can_be_added(client: httpx.AsyncClient) -> None:
    tiers = (await client.get("/api/v1/emergency/tiers")).json()
    receptors = {t["substance"]: t for t in tiers if t["receptor"]}
    assert receptors["no2"]["limit_value"] == 200.0 and receptors["no2"]["confirmed"] is True
    assert receptors["nh3"]["source"] == "HJ 2.2-2018 Appendix D, 1 h"
    assert receptors["nh3"]["confirmed"] is False

    response = await client.post(
        "/api/v1/emergency/tiers",
        json={
            "substance": "hcn", "tier": "ambient", "limit_value": 5, "unit": "ug/m3",
            "averaging": "1h", "severity": "info", "source": "local reference",
            "confirmed": False, "receptor": True,
        },
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["receptor"] is True
