"""``/`` and ``/docs`` as the service serves them: local assets only, the basemap setting passed
to the page, no ReDoc."""

from __future__ import annotations

import json
import re

import httpx
from support import api_client

from telemetry.settings import Settings

_CONFIG = re.compile(r'<script id="console-config" type="application/json">(.*?)</script>')


def _config(page: str) -> dict[str, str]:
    match = _CONFIG.search(page)
    assert match is not None, page
    config: dict[str, str] = json.loads(match.group(1))
    return config


def _external(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']?(?:https?:)?//[^"' >]+""", page)


async def test_the_console_page_needs_no_token_and_loads_only_local_assets(
    anonymous_client: httpx.AsyncClient,
) -> None:
    response = await anonymous_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'name="username"' in page and 'name="password"' in page
    assert _external(page) == []
    config = _config(page)
    assert config["basemap_url"] == ""
    script = await anonymous_client.get(config["worker_url"])
    assert script.status_code == 200
    for asset in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page):
        assert (await anonymous_client.get(asset)).status_code == 200, asset


async def test_the_basemap_setting_reaches_the_page_escaped(settings: Settings) -> None:
    url = "https://tiles.example.org/{z}/{x}/{y}.png?</script>"
    async with api_client(settings.model_copy(update={"console_basemap_url": url})) as client:
        page = (await client.get("/")).text
    assert _config(page)["basemap_url"] == url
    assert page.count("</script>") == page.count("<script")


async def test_docs_use_local_swagger_ui_and_redoc_is_off(
    anonymous_client: httpx.AsyncClient,
) -> None:
    page = (await anonymous_client.get("/docs")).text
    assert "/console/static/swagger/swagger-ui-bundle.js" in page
    assert "/console/static/swagger/swagger-ui.css" in page
    assert _external(page) == []
    assert "cdn" not in page
    assert (await anonymous_client.get("/console/static/swagger/swagger-ui-bundle.js")).is_success
    assert (await anonymous_client.get("/redoc")).status_code == 404
    assert (await anonymous_client.get("/openapi.json")).status_code == 200
