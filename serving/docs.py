"""``/docs`` without the internet: Swagger UI from files installed with the package.

FastAPI's default ``/docs`` page loads Swagger UI's JavaScript and CSS from a CDN, so on a
machine without internet access it is a blank page. The same assets ship in the
``fastapi-offline`` wheel (MIT; Swagger UI itself is Apache-2.0); the API serves them under
``/docs-static`` and the page points there. The validator badge (another remote call) is off.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
STATIC_URL = "/docs-static"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def swagger_assets_dir() -> Path:
    """The folder holding ``swagger-ui-bundle.js``, ``swagger-ui.css`` and ``favicon.png``."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fastapi-offline is not installed; it ships the Swagger UI assets (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def add_docs_routes(app: FastAPI) -> None:
    """``GET /docs`` (Swagger UI) and its assets, all served by this app. Create the app with ``docs_url=None``."""
    app.mount(STATIC_URL, StaticFiles(directory=swagger_assets_dir()), name="docs-static")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(OAUTH2_REDIRECT_URL, oauth2_redirect, methods=["GET"], include_in_schema=False)
