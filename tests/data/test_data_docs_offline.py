"""The Data Docs site of a validation opens without the internet: every asset it loads is in the site."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from expectations.suite import ValidationReport, validate
from families.credit_risk.data import credit_spec, generate_loan_applications
from features.spec import conform

ASSET_REF = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)""")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> ValidationReport:
    spec = credit_spec()
    frame = conform(generate_loan_applications(400, seed=3), spec)
    return validate(frame, spec, docs_dir=tmp_path_factory.mktemp("docs") / "data_docs")


def _pages(report: ValidationReport) -> list[Path]:
    assert report.data_docs_dir is not None
    return [p for p in report.data_docs_dir.glob("**/*.html") if "vendor" not in p.parts]


def test_no_page_or_stylesheet_loads_anything_from_the_internet(site: ValidationReport) -> None:
    assert site.data_docs_dir is not None
    remote = []
    for page in _pages(site):
        html = page.read_text()
        remote += [(page.name, u) for u in ASSET_REF.findall(html) + CSS_URL.findall(html) if re.match(r"(https?:)?//", u)]
    for css in (site.data_docs_dir / "static" / "styles").glob("*.css"):
        remote += [(css.name, u) for u in CSS_URL.findall(css.read_text()) if re.match(r"(https?:)?//", u)]
    assert remote == []


def test_every_asset_a_page_loads_is_a_file_in_the_site(site: ValidationReport) -> None:
    assets = 0
    for page in _pages(site):
        for ref in ASSET_REF.findall(page.read_text()):
            if ref.startswith("data:"):
                continue
            target = (page.parent / unquote(ref.split("?")[0])).resolve()
            assert target.is_file() and target.stat().st_size > 0, (page.name, ref)
            assets += 1
    assert assets >= 3 * 15  # index, suite and validation pages, each with GX's 15 library files


def test_the_report_names_the_validation_page_and_the_index_lists_it(site: ValidationReport) -> None:
    assert site.data_docs_dir is not None and site.data_docs_page is not None
    page = site.data_docs_dir / site.data_docs_page
    assert site.data_docs_page.startswith("validations/") and page.is_file()
    assert "Expectation Validation Result" in page.read_text()
    assert site.data_docs_page in (site.data_docs_dir / "index.html").read_text()


def test_the_demo_links_straight_to_the_validation_page_in_the_local_artifact_store(
    site: ValidationReport, tmp_path: Path
) -> None:
    import shutil

    from apps.demo import data_docs_link
    from ledgerline.settings import Settings

    assert site.data_docs_dir is not None and site.data_docs_page is not None
    settings = Settings(home=tmp_path)  # type: ignore[call-arg]  # artifacts in <home>/mlartifacts, as in the demo
    logged = tmp_path / "mlartifacts" / "7" / "run123" / "artifacts" / "validation" / "data_docs"
    shutil.copytree(site.data_docs_dir, logged)

    link = data_docs_link(settings, "7", "run123")

    assert link == (logged / site.data_docs_page).resolve().as_uri()
    s3 = Settings(home=tmp_path, artifacts_destination="s3://bucket/mlflow")  # type: ignore[call-arg]
    assert "run's artifacts" in data_docs_link(s3, "7", "run123")
