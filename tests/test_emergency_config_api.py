"""Emergency tiers added and changed over HTTP against a real database: add, duplicates,
unknown substances and bad values, unknown tiers, and the pipeline assigning the new tiers
after its refresh."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from telemetry.kinds.emergency.detection import assign_tiers
from telemetry.kinds.emergency.pipeline import EmergencyPipeline
from telemetry.settings import Settings

TIERS = "/api/v1/emergency/tiers"


def tier_body(**changes: Any) -> dict[str, Any]:
    return {
        "substance": "h2s",
        "tier": "odour",
        "limit_value": 0.01,
        "unit": "ppm",
        "averaging": "instant",
        "severity": "info",
        "source": "odour threshold, site emergency plan section 3",
        "confirmed": False,
        "note": "for early warning downwind of the plant",
    } | changes


def update_body(**changes: Any) -> dict[str, Any]:
    return {
        "limit_value": 20.0,
        "unit": "ppm",
        "severity": "warning",
        "source": "AIHA ERPG-2 (60 min), 2024 handbook",
        "confirmed": True,
    } | changes


async def tiers_by_key(client: httpx.AsyncClient) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["substance"], t["tier"]): t for t in (await client.get(TIERS)).json()}


async def test_a_new_tier_is_stored_with_its_source_and_listed(client: httpx.AsyncClient) -> None:
    response = await client.post(TIERS, json=tier_body())

    assert response.status_code == 201
    created = response.json()
    assert (created["substance"], created["tier"], created["limit_value"]) == ("h2s", "odour", 0.01)
    assert (created["severity"], created["alert_severity"], created["confirmed"]) == (
        "info",
        "info",
        False,
    )
    assert created["source"].startswith("odour threshold")
    assert (await tiers_by_key(client))[("h2s", "odour")]["id"] == created["id"]


async def test_a_tier_named_by_an_alias_is_stored_under_its_substance(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        TIERS, json=tier_body(substance="Hydrogen Sulfide", tier="aegl2", limit_value=27)
    )

    assert response.status_code == 201
    assert response.json()["substance"] == "h2s"


async def test_a_tier_above_a_critical_one_alerts_as_critical(client: httpx.AsyncClient) -> None:
    response = await client.post(
        TIERS,
        json=tier_body(tier="aegl3", limit_value=200, severity="warning", averaging="10min"),
    )

    assert response.status_code == 201
    assert (response.json()["severity"], response.json()["alert_severity"]) == (
        "warning",
        "critical",
    )


async def test_a_second_tier_of_the_same_name_is_409(client: httpx.AsyncClient) -> None:
    before = await tiers_by_key(client)

    response = await client.post(TIERS, json=tier_body(tier="erpg2", limit_value=25))

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert (await tiers_by_key(client))[("h2s", "erpg2")] == before[("h2s", "erpg2")]


@pytest.mark.parametrize(
    "changes",
    [
        {"substance": "unobtainium"},
        {"unit": "g/l"},
        {"unit": "ppt"},
        {"severity": "fatal"},
        {"limit_value": 0},
        {"limit_value": -1},
        {"limit_value": "Infinity"},
        {"tier": "Odour Level"},
        {"tier": ""},
        {"averaging": " "},
        {"source": ""},
        {"confirmed": None},
    ],
)
async def test_a_bad_tier_is_422(client: httpx.AsyncClient, changes: dict[str, Any]) -> None:
    count = len((await client.get(TIERS)).json())

    response = await client.post(TIERS, json=tier_body(**changes))

    assert response.status_code == 422
    assert len((await client.get(TIERS)).json()) == count


async def test_tiers_of_a_substance_without_molar_mass_keep_one_basis(
    client: httpx.AsyncClient,
) -> None:
    volume = tier_body(substance="voc", tier="pid-alarm", limit_value=10)
    assert (await client.post(TIERS, json=volume)).status_code == 201
    assert (
        await client.post(
            TIERS, json=volume | {"tier": "pid-high", "unit": "ppb", "limit_value": 50_000}
        )
    ).status_code == 201

    mass = await client.post(TIERS, json=volume | {"tier": "tvoc", "unit": "mg/m3"})

    assert mass.status_code == 422
    assert "molar mass" in mass.json()["detail"]
    pid = (await tiers_by_key(client))[("voc", "pid-alarm")]
    changed = await client.put(f"{TIERS}/{pid['id']}", json=update_body(unit="ug/m3"))
    assert changed.status_code == 422


async def test_a_tier_change_replaces_limit_unit_severity_and_source(
    client: httpx.AsyncClient,
) -> None:
    erpg2 = (await tiers_by_key(client))[("h2s", "erpg2")]

    response = await client.put(
        f"{TIERS}/{erpg2['id']}",
        json=update_body(limit_value=28, unit="mg/m3", severity="critical"),
    )

    assert response.status_code == 200
    changed = response.json()
    assert (changed["limit_value"], changed["unit"], changed["severity"]) == (
        28.0,
        "mg/m3",
        "critical",
    )
    assert (changed["tier"], changed["averaging"], changed["confirmed"]) == ("erpg2", "60min", True)
    assert changed["source"] == "AIHA ERPG-2 (60 min), 2024 handbook"
    assert (await tiers_by_key(client))[("h2s", "erpg2")] == changed


async def test_an_unknown_tier_is_404(client: httpx.AsyncClient) -> None:
    response = await client.put(f"{TIERS}/9999", json=update_body())

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "changes",
    [
        {"unit": "g/l"},
        {"severity": "fatal"},
        {"limit_value": 0},
        {"source": " "},
        {"substance": "nh3"},  # the substance is not changed here
    ],
)
async def test_a_bad_tier_change_is_422(client: httpx.AsyncClient, changes: dict[str, Any]) -> None:
    erpg2 = (await tiers_by_key(client))[("h2s", "erpg2")]

    response = await client.put(f"{TIERS}/{erpg2['id']}", json=update_body(**changes))

    assert response.status_code == 422
    assert (await tiers_by_key(client))[("h2s", "erpg2")] == erpg2


async def test_new_and_changed_tiers_are_assigned_after_refresh(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    pipeline = EmergencyPipeline(settings)
    await pipeline.refresh(pool)
    substance = np.array(["h2s", "h2s"], dtype=object)
    ppm = np.array([0.05, 25.0])  # under ERPG-1 (0.1 ppm); between REL (10) and ERPG-2 (30)
    mgm3 = ppm * 34.08 / 24.45

    def assigned() -> list[str | None]:
        tiers = pipeline.tiers
        return [
            None if p < 0 else str(tiers.tier[p])
            for p in assign_tiers(substance, ppm, mgm3, tiers).tolist()
        ]

    assert assigned() == [None, "rel"]
    assert (await client.post(TIERS, json=tier_body(limit_value=0.01))).status_code == 201
    erpg2 = (await tiers_by_key(client))[("h2s", "erpg2")]
    changed = await client.put(f"{TIERS}/{erpg2['id']}", json=update_body(limit_value=20))
    assert changed.status_code == 200
    assert assigned() == [None, "rel"]  # not before the refresh

    await pipeline.refresh(pool)

    assert assigned() == ["odour", "erpg2"]
