"""The duty officer's console at ``/`` and the API docs at ``/docs``, every asset served from
here so that both work on a network without the internet (docs/console.md).

``static/`` is the console's build output (``console/``, built with esbuild from npm packages
and committed, so the service runs without Node): the page's script and styles, MapLibre's
worker, and Swagger UI's script and styles for ``/docs``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from telemetry.settings import Settings

__all__ = ["STATIC_DIR", "STATIC_URL", "install_console"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/console/static"
DOCS_URL = "/docs"
_OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
_CONFIG_MARK = "<!--CONSOLE-CONFIG-->"
#: No favicon request at all (the browser asks for /favicon.ico otherwise).
_NO_FAVICON = "data:,"


def install_console(app: FastAPI, settings: Settings) -> None:
    """Adds ``/`` (the console), ``/docs`` (Swagger UI from local assets) and the static files
    to ``app``, whose own docs routes must be off (``docs_url=None``, ``redoc_url=None``)."""
    page = _console_page(settings)

    async def console() -> HTMLResponse:
        # The page is small and names the current build's assets: never cached stale.
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} – API",
            swagger_js_url=f"{STATIC_URL}/swagger/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger/swagger-ui.css",
            swagger_favicon_url=_NO_FAVICON,
            oauth2_redirect_url=_OAUTH2_REDIRECT_URL,
            # Swagger UI would send the document to an online validator otherwise.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_api_route("/", console, include_in_schema=False)
    app.add_api_route(DOCS_URL, docs, include_in_schema=False)
    app.add_api_route(_OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="console-static")


def _console_page(settings: Settings) -> str:
    """``index.html`` with the page's settings in a JSON script element (read by the page, not
    run), escaped so that no setting can close the element."""
    config = {
        "basemap_url": settings.console_basemap_url,
        "worker_url": f"{STATIC_URL}/maplibre-gl-worker.mjs",
    }
    text = json.dumps(config).replace("<", "\\u003c")
    element = f'<script id="console-config" type="application/json">{text}</script>'
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return template.replace(_CONFIG_MARK, element)
