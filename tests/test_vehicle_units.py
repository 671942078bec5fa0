"""Units declared per vehicle at registration, and the extra channels of portable instruments
(docs/domain.md §5.6): the conversion with literal arrays, the registration against the real
database, and an extra channel through the real broker, ingest worker and API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import numpy as np
import pytest
from conftest import Broker
from support import bearer, eventually, grant_token, publish

from api.app import create_app
from telemetry.broker import vehicles
from telemetry.errors import ValidationError
from telemetry.ingest.decode import Decoder
from telemetry.ingest.worker import IngestWorker
from telemetry.kinds.contract import Kind, Message
from telemetry.kinds.walkthrough.pipeline import WalkthroughPipeline
from telemetry.kinds.walkthrough.record import (
    POLLUTANTS,
    WalkthroughReading,
    vehicle_unit_factors,
    walkthrough_batch,
)
from telemetry.settings import Settings
from telemetry.store.audit import Actor
from telemetry.store.declared_units import load_vehicle_units

NOW_US = 1_795_305_600_000_000  # 2026-11-22T00:00:00Z
OPERATOR = Actor(None, "cli:test")
NO2_UG_PER_PPB = 46.01 / 24.4654037  # 298.15 K, 101.325 kPa


def _rows(messages: list[tuple[str, list[dict[str, object]]]]):  # type: ignore[no-untyped-def]
    decoded = Decoder(
        {Kind.WALKTHROUGH: WalkthroughReading},
        topic_prefix="telemetry",
        max_payload_bytes=4096,
        max_readings_per_message=10,
    ).decode(
        [
            Message(
                f"telemetry/walkthrough/{vehicle}",
                json.dumps(
                    [
                        {"ts": NOW_US // 1000 - i, "lat": 24.5, "lon": 118.1, **r}
                        for i, r in enumerate(readings)
                    ]
                ).encode(),
                NOW_US,
            )
            for vehicle, readings in messages
        ]
    )
    assert decoded.dead == []
    return decoded.rows[Kind.WALKTHROUGH]


def test_vehicle_units_apply_where_the_reading_declares_none() -> None:
    rows = _rows(
        [
            ("car-ppb", [{"no2": 40.0, "co": 1.0}, {"no2": 40.0, "units": {"no2": "ug/m3"}}]),
            ("car-plain", [{"no2": 40.0}]),
        ]
    )
    declared = {"car-ppb": {"no2": "ppb", "voc_pid": "ppm"}}

    batch = walkthrough_batch(rows, vehicle_units=declared)

    # car-ppb: NO2 in ppb → 75.2246 µg/m³; its second reading declares µg/m³ itself and wins;
    # car-plain declares nothing. CO was declared by nobody: as sent. voc_pid is an extra
    # channel: not converted.
    assert batch.no2.tolist() == pytest.approx([40.0 * NO2_UG_PER_PPB, 40.0, 40.0], rel=1e-9)
    assert batch.co[0] == 1.0
    assert batch.units.tolist() == [None, {"no2": "ug/m3"}, None]  # as sent
    # Without the mapping nothing changes.
    assert walkthrough_batch(rows).no2.tolist() == [40.0, 40.0, 40.0]


def test_vehicle_unit_factors_per_reading() -> None:
    vehicle_id = np.array(["a", "b", "a"], dtype=object)

    factors = vehicle_unit_factors(vehicle_id, {"a": {"co": "ug/m3", "extra": "dB"}})

    co = POLLUTANTS.index("co")
    expected = np.ones((3, len(POLLUTANTS)))
    expected[[0, 2], co] = 1e-3
    assert factors.tolist() == expected.tolist()
    assert vehicle_unit_factors(vehicle_id, {}).tolist() == np.ones((3, 7)).tolist()


def test_declared_unit_texts() -> None:
    assert vehicles.declared_units(
        ["NO2=ppb", "PM2.5=µg/m³", "CO=MG/M3", "voc_pid=ppm", "noise=dB(A)", "SO2="]
    ) == {
        "no2": "ppb",
        "pm25": "ug/m3",
        "co": "mg/m3",
        "voc_pid": "ppm",
        "noise": "dB(A)",
        "so2": "",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NO2", "CHANNEL=UNIT"),
        ("NO2=furlongs", "a no2 unit is one of ppb, ppm, ug/m3, mg/m3"),
        ("pm10=ppb", "pm10 has no single molar mass"),
        ("tvoc=ppm", "tvoc has no single molar mass"),
        ("a b=ppm", "CHANNEL=UNIT"),
        ("noise=d B", "without spaces"),
    ],
)
def test_a_bad_declaration_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        vehicles.declared_units([text])


async def test_registration_stores_the_units_and_changes_them_later(
    database_url: str, pool: asyncpg.Pool
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        password = await vehicles.register(
            conn, "wt-units", "walkthrough", actor=OPERATOR,
            units=vehicles.declared_units(["NO2=ppb", "voc_pid=ppm"]),
        )  # fmt: skip
        assert password is not None
        # Registered already: only the units change, the password stays.
        again = await vehicles.register(
            conn, "wt-units", "walkthrough", actor=OPERATOR,
            units=vehicles.declared_units(["NO2=", "CO=ppm"]),
        )  # fmt: skip
        assert again is None
    finally:
        await conn.close()

    assert await load_vehicle_units(pool) == {"wt-units": {"co": "ppm", "voc_pid": "ppm"}}
    audit = await pool.fetch(
        "SELECT action, after FROM audit_log WHERE entity_id = 'wt-units' ORDER BY id"
    )
    actions = [r["action"] for r in audit]
    assert actions == ["declared_units", "register", "declared_units"]
    last = audit[-1]["after"]
    last = json.loads(last) if isinstance(last, str) else last
    assert last == {"units": {"co": "ppm", "voc_pid": "ppm"}}


async def test_a_hand_made_bad_unit_is_refused_by_the_table(
    database_url: str, pool: asyncpg.Pool
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await vehicles.register(conn, "wt-x", "walkthrough", actor=OPERATOR)
    finally:
        await conn.close()
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "INSERT INTO vehicle_declared_units (vehicle_id, channel, unit)"
            " VALUES ('wt-x', 'pm25', 'ppb')"
        )


async def test_no2_in_ppb_declared_by_the_vehicle_is_stored_in_ug_m3(
    database_url: str, pool: asyncpg.Pool
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await vehicles.register(
            conn, "wt-ppb", "walkthrough", actor=OPERATOR,
            units=vehicles.declared_units(["NO2=ppb"]),
        )  # fmt: skip
    finally:
        await conn.close()
    worker = IngestWorker(Settings(database_url=database_url, ingest_enabled=False), pool)
    await worker.refresh()
    now_us = time.time_ns() // 1000
    ts = now_us // 1000 - 5000
    readings = [
        {"ts": ts, "lat": 24.5, "lon": 118.1, "no2": 40.0},
        {"ts": ts + 1000, "lat": 24.5, "lon": 118.1, "no2": 40.0, "units": {"no2": "ug/m3"}},
    ]

    await worker._flush(
        [Message("telemetry/walkthrough/wt-ppb", json.dumps(readings).encode(), now_us)]
    )

    stored = await pool.fetch(
        "SELECT no2 FROM walkthrough_readings WHERE vehicle_id = 'wt-ppb' ORDER BY ts"
    )
    assert [r["no2"] for r in stored] == pytest.approx([40.0 * NO2_UG_PER_PPB, 40.0], rel=1e-6)


# --- an extra channel through the broker, the ingest worker and the API ---------------------


@pytest.fixture
async def service(
    database_url: str, pool: asyncpg.Pool, broker: Broker
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"units-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        ingest_enabled=False,
    )
    worker = IngestWorker(settings, pool, pipelines=[WalkthroughPipeline(settings)])
    await worker.start()
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = bearer(await grant_token(database_url))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=headers
            ) as client:
                yield client
    finally:
        await worker.stop()


async def test_an_extra_channel_is_queryable_with_its_declared_unit(
    service: httpx.AsyncClient, broker: Broker, database_url: str, pool: asyncpg.Pool
) -> None:
    vehicle = f"sentinel-{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(database_url)
    try:
        await vehicles.register(
            conn, vehicle, "walkthrough", actor=OPERATOR,
            units=vehicles.declared_units(["voc_pid=ppm"]),
        )  # fmt: skip
    finally:
        await conn.close()
    now_ms = time.time_ns() // 1_000_000 - 60_000
    readings = [
        {"ts": now_ms + i * 1000, "lat": 24.5, "lon": 118.1 + i * 1e-4, "pm25": 30.0,
         "voc_pid": 0.5 + i, "probe": "A"}
        for i in range(3)
    ]  # fmt: skip
    readings.append({"ts": now_ms + 3000, "lat": 24.5, "lon": 118.1, "pm25": 31.0})
    # A reading declaring its own unit for an extra channel keeps it, point by point.
    readings[2]["units"] = {"voc_pid": "ppb"}
    publish(broker, f"telemetry/walkthrough/{vehicle}", [json.dumps(readings)])

    async def stored() -> bool:
        count = await pool.fetchval(
            "SELECT count(*) FROM walkthrough_readings WHERE vehicle_id = $1", vehicle
        )
        return bool(count == 4)

    await eventually(stored)
    params = {"vehicle_id": vehicle, "channel": "voc_pid", "limit": 2}

    first = await service.get("/api/v1/readings/extra", params=params)

    assert first.status_code == 200, first.text
    page = first.json()
    assert (page["vehicle_id"], page["channel"], page["unit"]) == (vehicle, "voc_pid", "ppm")
    assert [p["value"] for p in page["items"]] == [0.5, 1.5]
    assert page["items"][1]["lon"] == pytest.approx(118.1001)
    second = await service.get(
        "/api/v1/readings/extra", params={**params, "cursor": page["next_cursor"]}
    )
    rest = second.json()
    # The reading without the field is not part of the series.
    assert ([p["value"] for p in rest["items"]], rest["next_cursor"]) == ([2.5], None)
    assert [p["unit"] for p in page["items"] + rest["items"]] == [None, None, "ppb"]

    text = await service.get(
        "/api/v1/readings/extra", params={"vehicle_id": vehicle, "channel": "probe"}
    )
    assert [p["value"] for p in text.json()["items"]] == ["A", "A", "A"]
    assert text.json()["unit"] is None
    bad = await service.get(
        "/api/v1/readings/extra",
        params={**params, "since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
    )
    assert bad.status_code == 422
