"""The console at ``/`` in a real headless Chromium (Debian's ``chromium`` package, driven by
Playwright through ``executable_path``) against the real service: its HTTP server, ingest
worker, PostgreSQL and the project's broker, on the demo road network with named streets.

The page logs in through its form, draws the road segments, shows an alert for a plume
published with ``mosquitto_pub`` without a reload, acknowledges it, switches language, and
asks nothing of any other host. Screenshots are kept under ``test-artifacts/``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import uvicorn
from conftest import free_port
from support import TEST_PASSWORD, bearer, eventually, grant_token, publish
from test_api_alerts import insert_alert

from api.app import create_app
from telemetry.roads.importer import import_roads
from telemetry.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (scripts/setup installs it: apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.async_api import Browser, Page, Request, async_playwright  # noqa: E402

#: WebGL without a GPU, for MapLibre: SwiftShader through ANGLE.
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
OFFICER = "duty-officer"
VIEWER = "night-viewer"
#: Waits for the page; the plume's alert needs the pass to end (pass_max_gap_s) and a poll.
PAGE_TIMEOUT_MS = 30_000


@dataclass
class Service:
    url: str
    settings: Settings
    client: httpx.AsyncClient


@dataclass
class Requests:
    """Every request the page made."""

    urls: list[str] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.urls.append(request.url)

    def elsewhere(self, origin: str) -> list[str]:
        """Requests to any other origin (``data:`` and ``blob:`` URLs stay in the page)."""
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme not in {"data", "blob"} and not u.startswith(origin + "/")
        ]


@pytest.fixture
async def service(database_url: str, broker: Any) -> AsyncIterator[Service]:
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"console-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50,
        pass_max_gap_s=2,
    )
    await import_roads(settings, ROOT / "data/roads/demo.geojson", segment_length_m=30)
    for name, role in ((OFFICER, "officer"), (VIEWER, "viewer")):
        await grant_token(database_url, role, name)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    headers = bearer(await grant_token(database_url, "admin"))
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        await eventually(lambda: _healthy(client))
        try:
            yield Service(url, settings, client)
        finally:
            server.should_exit = True
            await task


async def _healthy(client: httpx.AsyncClient) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return (await client.get("/healthz")).status_code == 200
    return False


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def open_page(browser: Browser, locale: str, requests: Requests) -> Page:
    context = await browser.new_context(locale=locale, viewport={"width": 1400, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.on("request", requests.record)
    return page


async def log_in(page: Page, url: str, username: str) -> None:
    await page.goto(url + "/")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", TEST_PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("body[data-ready=true]")


#: The incident's source: the network's south-east corner.
SOURCE = (116.33, 39.983)


async def open_incident(client: httpx.AsyncClient, broker: Any) -> int:
    """An open H2S incident with an emergency vehicle's readings around it, 300 m to 1.5 km
    away to the north-east, east and south-east; its id once its assessment has cells."""
    response = await client.post(
        "/api/v1/incidents",
        json={
            "name": "Tank leak at the depot",
            "lat": SOURCE[1],
            "lon": SOURCE[0],
            "started_at": "2020-01-01T00:00:00Z",
            "suspected_substances": ["h2s"],
        },
    )
    assert response.status_code == 201, response.text
    incident_id: int = response.json()["id"]
    now_ms = time.time_ns() // 1_000_000
    readings = []
    for i, (bearing_deg, distance_m, ppm) in enumerate(
        [(45, 300, 60.0), (90, 400, 30.0), (135, 350, 45.0), (60, 900, 12.0), (100, 1400, 3.0)]
    ):
        north = distance_m * math.cos(math.radians(bearing_deg)) / 111_320
        east = distance_m * math.sin(math.radians(bearing_deg)) / 85_300
        readings.append(
            {
                "ts": now_ms - (10 - i) * 1000,
                "lat": SOURCE[1] + north,
                "lon": SOURCE[0] + east,
                "wind_speed_ms": 2.0,
                "wind_dir_deg": 250,
                "gases": {"H2S": {"value": ppm, "unit": "ppm", "sensor": "EC"}},
            }
        )
    publish(broker, "telemetry/emergency/em-console-1", [json.dumps(readings)])

    async def cells() -> int:
        geojson = await client.get(f"/api/v1/incidents/{incident_id}/assessment.geojson")
        return sum(1 for f in geojson.json()["features"] if f["properties"]["feature"] == "cell")

    await eventually(cells)
    return incident_id


async def _measured_segments(client: httpx.AsyncClient) -> int:
    items = (await client.get("/api/v1/segments", params={"limit": 50})).json()["items"]
    return sum(1 for s in items if s["readings"] > 0)


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


async def drawn_streets(page: Page) -> list[str]:
    """The names of the segments the map has drawn (features of its rendered tiles)."""
    names: list[str] = await page.evaluate(
        "() => window.telemetryConsole.map.querySourceFeatures('segments')"
        ".map((f) => f.properties.name)"
    )
    return names


async def labelled_streets(page: Page) -> list[str]:
    """The street names the map has placed as labels."""
    names: list[str] = await page.evaluate(
        "() => window.telemetryConsole.map.queryRenderedFeatures({layers: ['street-names']})"
        ".map((f) => f.properties.name)"
    )
    return names


async def longest_segment(database_url: str) -> tuple[int, str, list[list[float]]]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT id, name, coords::text AS coords FROM road_segments"
            " WHERE name IS NOT NULL ORDER BY length_m DESC, id LIMIT 1"
        )
    finally:
        await conn.close()
    return row["id"], row["name"], json.loads(row["coords"])


def plume(coords: list[list[float]], n: int = 6) -> list[dict[str, float]]:
    """``n`` readings along the segment, one a second, far over the PM2.5 limit."""
    (x0, y0), (x1, y1) = coords[0], coords[-1]
    now_ms = time.time_ns() // 1_000_000
    return [
        {
            "ts": now_ms - (n - i) * 1000,
            "lat": y0 + (y1 - y0) * (i + 0.5) / n,
            "lon": x0 + (x1 - x0) * (i + 0.5) / n,
            "pm25": 180.0 + i,
            "pm10": 90.0,
        }
        for i in range(n)
    ]


def drive(coords: list[list[float]], levels: list[float]) -> list[dict[str, float]]:
    """A drive along a street's polyline, one reading a second at each PM2.5 level in turn,
    ending a minute ago (an earlier pass than the plume's)."""
    (x0, y0), (x1, y1) = coords[0], coords[-1]
    n = len(levels)
    start_ms = time.time_ns() // 1_000_000 - 60_000 - n * 1000
    return [
        {
            "ts": start_ms + i * 1000,
            "lat": y0 + (y1 - y0) * i / (n - 1),
            "lon": x0 + (x1 - x0) * i / (n - 1),
            "pm25": level,
        }
        for i, level in enumerate(levels)
    ]


def demo_street(name: str) -> list[list[float]]:
    roads = json.loads((ROOT / "data/roads/demo.geojson").read_text())
    [coords] = [
        f["geometry"]["coordinates"] for f in roads["features"] if f["properties"]["name"] == name
    ]
    return [coords[0], coords[-1]]


async def test_officer_sees_the_roads_and_a_live_alert_and_acknowledges_it(
    service: Service, browser: Browser, broker: Any, database_url: str
) -> None:
    # Levels under the limit along one street, so that the map has colours to show.
    levels = [10.0 + 40.0 * i / 119 for i in range(120)]
    readings = drive(demo_street("景行路"), levels)
    publish(broker, "telemetry/walkthrough/car-console-0", [json.dumps(readings)])
    await open_incident(service.client, broker)
    await eventually(lambda: _measured_segments(service.client))

    requests = Requests()
    page = await open_page(browser, "en-GB", requests)
    await log_in(page, service.url, OFFICER)

    assert await page.text_content("header h1") == "Duty officer's console"
    assert int(await page.get_attribute("body", "data-segments") or 0) > 0
    streets = await eventually(lambda: drawn_streets(page))
    assert {"知行路", "景行路"} <= set(streets)
    assert "景行路" in await eventually(lambda: labelled_streets(page))
    ratios = await page.evaluate(
        "() => window.telemetryConsole.map.querySourceFeatures('segments')"
        ".map((f) => f.properties.ratio).filter((r) => r >= 0)"
    )
    assert ratios and max(ratios) < 1
    incident_features = await page.evaluate(
        "() => window.telemetryConsole.map.querySourceFeatures('incidents')"
        ".map((f) => f.properties.feature)"
    )
    assert {"source", "cell"} <= set(incident_features)
    assert "Tank leak at the depot" in (await page.text_content("#incident-list") or "")
    legend = await page.text_content("#legend") or ""
    assert "PM2.5: recent mean ÷ limit" in legend
    assert "GB 3095-2026" in legend
    await screenshot(page, "console-map.png")

    segment_id, street, coords = await longest_segment(database_url)
    # Gone if the page reloads: the alert must arrive over the live stream.
    await page.evaluate("() => { window.sincePublish = true; }")
    publish(broker, "telemetry/walkthrough/car-console-1", [json.dumps(plume(coords))])
    card = page.locator("li.alert.kind-walkthrough", has_text=street).first
    await card.wait_for()
    alert_id = int(await card.get_attribute("data-alert-id") or 0)
    assert await card.locator(".status").text_content() == "open"
    text = await card.text_content() or ""
    assert "pass screening, share of the limit" in text and "car-console-1" in text
    assert await page.evaluate("() => window.sincePublish") is True
    await screenshot(page, "console-alert.png")

    await card.locator("input[name=note]").fill("crew sent to check")
    await card.locator("button.ack").click()
    card = page.locator(f"li.alert[data-alert-id='{alert_id}']")
    await page.wait_for_function(
        f"() => document.querySelector(\"li.alert[data-alert-id='{alert_id}'] .status\")"
        "?.textContent === 'acknowledged'"
    )
    stored = (await service.client.get(f"/api/v1/alerts/{alert_id}")).json()
    assert stored["status"] == "acknowledged"
    assert stored["acknowledged_by"] == OFFICER
    assert stored["ack_note"] == "crew sent to check"
    assert segment_id in stored["segments"]

    await page.select_option("#language", "zh")
    assert await page.text_content("header h1") == "值班员控制台"
    assert await card.locator(".status").text_content() == "已确认"
    assert "走航筛查, 占标率" in (await card.text_content() or "")
    assert "占标率" in (await page.text_content("#legend") or "")
    await screenshot(page, "console-zh.png")

    assert requests.urls
    assert requests.elsewhere(service.url) == []


async def test_chinese_is_chosen_when_the_browser_prefers_it_and_a_viewer_cannot_acknowledge(
    service: Service, browser: Browser, pool: asyncpg.Pool
) -> None:
    segment_id, street, _ = await longest_segment(service.settings.database_url)
    await insert_alert(
        pool,
        subject=f"segment:{segment_id}",
        segment_id=segment_id,
        segments=[segment_id],
        rule="pass_screening",
        severity="warning",
        limit_value=60.0,
    )
    requests = Requests()
    page = await open_page(browser, "zh-CN", requests)
    await log_in(page, service.url, VIEWER)
    assert await page.text_content("header h1") == "值班员控制台"

    card = page.locator("li.alert", has_text=street).first
    await card.locator("button.ack").click()
    message = page.locator("#message")
    await message.wait_for()
    assert "viewer" in (await message.text_content() or "")
    assert await card.locator(".status").text_content() == "未处理"
    await screenshot(page, "console-viewer-zh.png")

    await page.click("#logout")
    await page.wait_for_selector("#login-form")
    assert await page.evaluate("() => sessionStorage.length") == 0
    assert requests.elsewhere(service.url) == []


async def test_api_docs_load_without_a_cdn(service: Service, browser: Browser) -> None:
    requests = Requests()
    page = await open_page(browser, "en-GB", requests)
    await page.goto(service.url + "/docs")
    await page.wait_for_selector(".swagger-ui .opblock")
    assert "Vehicle telemetry" in (await page.text_content(".swagger-ui .info .title") or "")
    await screenshot(page, "api-docs.png")
    assert any(u.endswith("/openapi.json") for u in requests.urls)
    assert requests.elsewhere(service.url) == []
    assert (await service.client.get("/redoc")).status_code == 404
