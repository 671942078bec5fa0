"""Remote-sensing limits and validity gates changed over HTTP against a real database: add,
supersede, overlap, bad input, unknown gates, and the pipeline judging by the new values after
its refresh."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from telemetry.kinds.contract import KindRows
from telemetry.kinds.remote_sensing.pipeline import RemoteSensingPipeline
from telemetry.kinds.remote_sensing.record import RemoteSensingRecord
from telemetry.settings import Settings

LIMITS = "/api/v1/remote-sensing/limits"
GATES = "/api/v1/remote-sensing/gates"


def limit_body(**changes: Any) -> dict[str, Any]:
    return {
        "fuel_type": "gasoline",
        "pollutant": "no",
        "limit_value": 1000.0,
        "unit": "ppm",
        "source": "local standard DB11/xxx, table 2",
        "confirmed": True,
        "effective_from": "2024-01-01",
    } | changes


def a_pass(plate: str, **overrides: Any) -> dict[str, Any]:
    """A valid gasoline pass measured a minute ago."""
    return {
        "ts": time.time_ns() // 1_000_000 - 60_000,
        "lat": 39.98301,
        "lon": 116.3152,
        "plate": plate,
        "fuel_type": "gasoline",
        "speed_kmh": 30.0,
        "accel_ms2": 0.3,
        "slope_pct": 0.5,
        "temp_c": 18.0,
        "wind_speed_ms": 1.5,
        "no_ppm": 1200.0,
        **overrides,
    }


def batch_of(pipeline: RemoteSensingPipeline, passes: list[dict[str, Any]]) -> Any:
    rows = KindRows()
    for p in passes:
        rows.records.append(msgspec.convert(p, RemoteSensingRecord))
        rows.vehicle_id.append("rs-config")
        rows.received_us.append(time.time_ns() // 1000)
        rows.extras.append(None)
    return pipeline.to_batch(rows)


async def test_limits_are_listed_with_their_source_and_filtered(
    client: httpx.AsyncClient,
) -> None:
    everything = (await client.get(LIMITS)).json()
    [no] = (await client.get(LIMITS, params={"fuel_type": "gasoline", "pollutant": "no"})).json()

    assert len(everything) == 6
    assert all(limit["source"] for limit in everything)
    assert (no["limit_value"], no["unit"], no["confirmed"]) == (1500.0, "ppm", False)
    assert no["effective_to"] is None
    assert "GB 18285-2018" in no["source"]


async def test_a_new_limit_closes_the_open_ended_row_it_supersedes(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(LIMITS, json=limit_body(note="stricter local value"))

    assert created.status_code == 201
    new = created.json()
    assert (new["limit_value"], new["confirmed"], new["note"]) == (
        1000.0,
        True,
        "stricter local value",
    )
    old, current = (
        await client.get(LIMITS, params={"fuel_type": "gasoline", "pollutant": "no"})
    ).json()
    assert (old["limit_value"], old["effective_from"], old["effective_to"]) == (
        1500.0,
        "2019-05-01",
        "2024-01-01",
    )
    assert (current["id"], current["effective_to"]) == (new["id"], None)
    # Other pollutants of the fuel type are untouched.
    [hc] = (await client.get(LIMITS, params={"fuel_type": "gasoline", "pollutant": "hc"})).json()
    assert hc["effective_to"] is None


async def test_a_limit_for_a_fuel_type_without_one_starts_a_new_series(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(
        LIMITS, json=limit_body(fuel_type="natural_gas", effective_to="2030-01-01")
    )

    assert created.status_code == 201
    [row] = (await client.get(LIMITS, params={"fuel_type": "natural_gas"})).json()
    assert (row["pollutant"], row["effective_to"]) == ("no", "2030-01-01")


@pytest.mark.parametrize(
    "changes",
    [
        {"effective_from": "2019-05-01"},  # the same start as the seeded row
        {"effective_from": "2018-01-01"},  # before the seeded row and open-ended over it
        {"effective_from": "2018-01-01", "effective_to": "2020-01-01"},
    ],
)
async def test_a_limit_overlapping_another_row_is_409(
    client: httpx.AsyncClient, changes: dict[str, Any]
) -> None:
    response = await client.post(LIMITS, json=limit_body(**changes))

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert len((await client.get(LIMITS, params={"pollutant": "no"})).json()) == 2


async def test_a_limit_inside_a_closed_period_is_409(client: httpx.AsyncClient) -> None:
    assert (await client.post(LIMITS, json=limit_body())).status_code == 201

    response = await client.post(LIMITS, json=limit_body(effective_from="2023-06-01"))

    assert response.status_code == 409


@pytest.mark.parametrize(
    "changes",
    [
        {"limit_value": 0},
        {"limit_value": -5},
        {"limit_value": "NaN"},
        {"pollutant": "pm25"},
        {"unit": "%"},  # NO is reported in ppm
        {"pollutant": "co", "unit": "ppm"},  # CO is reported in %
        {"fuel_type": "unknown"},  # passes of unknown fuel are never judged
        {"fuel_type": "kerosene"},
        {"source": "  "},
        {"effective_to": "2023-12-31"},
        {"effective_to": "2024-01-01"},
        {"confirmed": None},
    ],
)
async def test_a_bad_limit_is_422(client: httpx.AsyncClient, changes: dict[str, Any]) -> None:
    response = await client.post(LIMITS, json=limit_body(**changes))

    assert response.status_code == 422
    assert len((await client.get(LIMITS)).json()) == 6


async def test_a_limit_without_a_source_is_422(client: httpx.AsyncClient) -> None:
    body = limit_body()
    del body["source"]

    assert (await client.post(LIMITS, json=body)).status_code == 422


async def test_a_lowered_no_limit_makes_a_pass_count_as_over_after_refresh(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    pipeline = RemoteSensingPipeline(settings)
    await pipeline.refresh(pool)
    batch = batch_of(pipeline, [a_pass("京N10001", no_ppm=1200.0)])
    assert pipeline.judge(batch).over["no"].tolist() == [False]  # under 1500 ppm

    response = await client.post(LIMITS, json=limit_body(limit_value=1000.0))
    assert response.status_code == 201
    assert pipeline.judge(batch).over["no"].tolist() == [False]  # not before the refresh

    await pipeline.refresh(pool)
    judgement = pipeline.judge(batch)
    assert judgement.over["no"].tolist() == [True]
    async with pool.acquire() as conn, conn.transaction():
        await pipeline.commit(conn, batch, now_us=time.time_ns() // 1000)
    [stored] = (await client.get("/api/v1/plates/京N10001")).json()["passes"]
    assert (stored["valid"], stored["exceeded"]) == (True, ["no"])


async def test_gates_are_listed_in_check_order_with_their_source(
    client: httpx.AsyncClient,
) -> None:
    gates = (await client.get(GATES)).json()

    assert [g["id"] for g in gates] == sorted(g["id"] for g in gates)
    by_reason = {g["reason"]: g for g in gates}
    wind = by_reason["wind_too_strong"]
    assert (wind["parameter"], wind["min_value"], wind["max_value"]) == ("wind_speed_ms", None, 5)
    assert wind["confirmed"] is False
    assert by_reason["vsp_out_of_range"]["applies_to"] == "gasoline"
    assert all(g["source"] for g in gates)


async def gate_id(client: httpx.AsyncClient, reason: str) -> int:
    gates = (await client.get(GATES)).json()
    return next(g["id"] for g in gates if g["reason"] == reason)


async def test_a_gate_change_replaces_bounds_source_and_confirmation(
    client: httpx.AsyncClient,
) -> None:
    wind = await gate_id(client, "wind_too_strong")

    response = await client.put(
        f"{GATES}/{wind}",
        json={
            "min_value": 0.5,
            "max_value": 8,
            "source": "HJ 845-2017 section 5.2",
            "confirmed": True,
        },
    )

    assert response.status_code == 200
    changed = response.json()
    assert (changed["min_value"], changed["max_value"], changed["confirmed"]) == (0.5, 8, True)
    assert (changed["parameter"], changed["reason"], changed["note"]) == (
        "wind_speed_ms",
        "wind_too_strong",
        None,
    )
    listed = {g["id"]: g for g in (await client.get(GATES)).json()}
    assert listed[wind]["source"] == "HJ 845-2017 section 5.2"


async def test_an_unknown_gate_is_404(client: httpx.AsyncClient) -> None:
    response = await client.put(
        f"{GATES}/9999", json={"min_value": 0, "max_value": 1, "source": "s", "confirmed": True}
    )

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "changes",
    [
        {"min_value": 6, "max_value": 5},
        {"min_value": None, "max_value": None},
        {"max_value": "Infinity"},
        {"max_value": "NaN"},
        {"source": ""},
        {"parameter": "speed_kmh"},  # the parameter is not changed here
    ],
)
async def test_a_bad_gate_change_is_422(client: httpx.AsyncClient, changes: dict[str, Any]) -> None:
    wind = await gate_id(client, "wind_too_strong")
    body = {"min_value": None, "max_value": 5, "source": "s", "confirmed": False} | changes

    response = await client.put(f"{GATES}/{wind}", json=body)

    assert response.status_code == 422
    listed = {g["id"]: g for g in (await client.get(GATES)).json()}
    assert listed[wind]["max_value"] == 5


async def test_a_widened_gate_makes_a_pass_valid_after_refresh(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    pipeline = RemoteSensingPipeline(settings)
    await pipeline.refresh(pool)
    batch = batch_of(pipeline, [a_pass("京W10001", wind_speed_ms=6.5)])
    assert pipeline.judge(batch).reason.tolist() == ["wind_too_strong"]
    wind = await gate_id(client, "wind_too_strong")

    response = await client.put(
        f"{GATES}/{wind}",
        json={"min_value": None, "max_value": 8, "source": "site survey", "confirmed": True},
    )
    assert response.status_code == 200
    await pipeline.refresh(pool)

    judgement = pipeline.judge(batch)
    assert judgement.valid.tolist() == [True]
    assert judgement.reason.tolist() == [""]
