"""``/docs`` works without the internet: the page loads Swagger UI from the API itself."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from ledgerline.settings import Settings
from serving.app import create_app
from serving.settings import ServingSettings


def _client(tmp_path: Path) -> TestClient:
    settings = ServingSettings(models=["credit-risk"], api_keys=["k" * 16], admin_key="a" * 16)  # type: ignore[call-arg]
    platform = Settings(home=tmp_path, app_db_url=f"sqlite:///{tmp_path / 'app.db'}")  # type: ignore[call-arg]
    return TestClient(create_app(settings, platform))  # no lifespan: nothing is loaded


def test_the_docs_page_references_no_remote_asset_and_every_asset_it_names_is_served(tmp_path: Path) -> None:
    client = _client(tmp_path)

    page = client.get("/docs")

    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets and not [a for a in assets if re.match(r"(https?:)?//", a)], assets
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert "swagger-ui-bundle.js" in page.text and "swagger-ui.css" in page.text
    assert '"validatorUrl": null' in page.text  # no badge fetched from validator.swagger.io
    assert "cdn." not in page.text


def test_the_bundled_swagger_ui_renders_openapi_3_1_documents(tmp_path: Path) -> None:
    # FastAPI emits OpenAPI 3.1; Swagger UI 4 shows "Unable to render this definition" for it
    bundle = _client(tmp_path).get("/docs-static/swagger-ui-bundle.js").text
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.(\d+)\.(\d+)"', bundle)
    assert version is not None and int(version.group(1)) >= 5, version
