"""Great Expectations 1.x adapter: dataset spec -> GX suite -> our own ValidationReport.

This is the only package that imports ``great_expectations``. GX changes quickly, so its
objects never leave this package except the suite returned by :func:`build_suite`; callers
get a :class:`ValidationReport` made of plain Python values.

GX is imported lazily (it takes several seconds) and always with usage analytics off and
progress bars disabled. Each :func:`validate` call runs in a fresh in-memory (ephemeral)
Data Context, so nothing is written to disk unless ``docs_dir`` asks for a Data Docs site.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.labels import INTEGER_LABEL_TYPES
from features.spec import LABEL_COLUMN, DatasetSpec
from ledgerline.errors import DataError

from .family import NO_EXTRA, FamilyExpectations
from .summaries import summarize

if TYPE_CHECKING:
    from types import ModuleType

    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context import EphemeralDataContext

logger = logging.getLogger(__name__)

# How many offending values GX returns per expectation; summaries show at most MAX_EXAMPLES
# distinct ones. Asking GX for more than we show lets two different bad values both appear
# when the first rows all repeat the same one.
PARTIAL_UNEXPECTED_COUNT = 20
MAX_EXAMPLES = 5
RESULT_FORMAT: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED_COUNT}

# dtypes accepted as "numeric" by expect_column_values_to_be_in_type_list on pandas.
NUMERIC_TYPES: tuple[str, ...] = (
    "float64",
    "float32",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "uint8",
    "Float64",
    "Float32",
    "Int64",
    "Int32",
)
LABEL_TYPES: tuple[str, ...] = INTEGER_LABEL_TYPES  # a class label's encoding (binary, categories)

DATA_SOURCE_NAME = "ledgerline"
DOCS_SITE_NAME = "ledgerline_site"

#: Local copies of the web assets GX's Data Docs templates load from CDNs (versions, sources and
#: licences in expectations/static/README.md). Without them the pages render empty offline.
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
#: Where a built site keeps them, relative to its root.
SITE_VENDOR = "static/vendor"
#: CDN URL in GX 1.24's templates -> file under VENDOR_DIR.
VENDORED_ASSETS: dict[str, str] = {
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-free-6.6.0/css/all.min.css",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js-1.12.9/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/js/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/css/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table-1.19.1/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table-1.19.1/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "forevolve-bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.css",
}
#: The logo GX's stylesheet pulls from a bucket; the site ships the same logo in static/images.
_REMOTE_LOGO = re.compile(r"url\(['\"]?https://great-expectations-web-assets[^)'\"]*['\"]?\)")
_REMOTE_IMG = re.compile(r"""src=["']https://great-expectations-web-assets[^"']*["']""")
_SITE_STATIC_REF = re.compile(r"""((?:src|href)=["'])(?:\./|(?:\.\./)+)?static/""")
_ASSET_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_REMOTE_ASSET = re.compile(r"""<(?:script|link|img)\b[^>]*(?:src|href)=["'](?:https?:)?//[^"']+["']""", re.IGNORECASE)


@dataclass(frozen=True)
class FailedExpectation:
    expectation: str
    column: str | None
    summary: str
    unexpected_examples: tuple[str, ...]


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    suite_name: str
    evaluated: int
    failures: tuple[FailedExpectation, ...]
    result_json: dict
    data_docs_dir: Path | None
    #: The validation result's page inside ``data_docs_dir`` (what to open first), relative to it.
    data_docs_page: str | None = None

    def message(self) -> str:
        if self.success:
            return f"data passed all {self.evaluated} expectations of suite '{self.suite_name}'"
        details = "; ".join(f.summary for f in self.failures)
        return f"data failed {len(self.failures)} of {self.evaluated} expectations: {details}"


def _import_gx() -> ModuleType:
    """great_expectations, imported with usage analytics switched off."""
    # Read by GX when a context does not say otherwise; set before the first import so that
    # nothing GX starts at import time could try to reach the network.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def suite_name(spec: DatasetSpec) -> str:
    return f"{spec.name}-suite"


def expected_columns(spec: DatasetSpec, extra: FamilyExpectations = NO_EXTRA) -> list[str]:
    """The exact set of columns ``conform(raw, spec)`` produces, in its order (plus the columns the
    family's expectations derive before validation)."""
    cols = [spec.id_column] if spec.id_column else []
    label = [spec.target, LABEL_COLUMN] if spec.target is not None else []
    return [*cols, *spec.feature_names, *spec.passthrough, *label, *extra.derived_columns(spec)]


def build_suite(spec: DatasetSpec, extra: FamilyExpectations = NO_EXTRA) -> ExpectationSuite:
    """The GX expectation suite for data conformed to ``spec``; named ``f"{spec.name}-suite"``.

    The suite is not attached to any Data Context.
    """
    gx = _import_gx()
    import great_expectations.expectations as gxe

    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=expected_columns(spec, extra), exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=spec.min_rows, max_value=None),
    ]
    for col in spec.columns:
        if col.max_null_fraction > 0:
            exps.append(
                gxe.ExpectColumnValuesToNotBeNull(column=col.name, mostly=round(1.0 - col.max_null_fraction, 6))
            )
        else:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.kind == "datetime":
            continue  # conform already parsed every value as a UTC timestamp
        if col.kind == "numeric":
            exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=list(NUMERIC_TYPES)))
            if col.min is not None or col.max is not None:
                exps.append(gxe.ExpectColumnValuesToBeBetween(column=col.name, min_value=col.min, max_value=col.max))
        elif col.values is not None:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.values)))
    exps += extra.expectations(spec, gxe)
    if spec.target is None:
        return gx.ExpectationSuite(name=suite_name(spec), expectations=exps, meta={"dataset": spec.name})
    exps += label_expectations(spec, gxe)
    return gx.ExpectationSuite(name=suite_name(spec), expectations=exps, meta={"dataset": spec.name})


def label_expectations(spec: DatasetSpec, gxe: Any) -> list[Any]:
    """What the target and its encoded column may hold, as the spec's label codec says (see ``LabelDomain``)."""
    assert spec.target is not None
    domain = spec.label_codec.domain()
    exps = [gxe.ExpectColumnValuesToNotBeNull(column=spec.target)]
    if domain.target_values is not None:
        exps.append(gxe.ExpectColumnValuesToBeInSet(column=spec.target, value_set=list(domain.target_values)))
        if domain.all_present:
            exps.append(gxe.ExpectColumnDistinctValuesToContainSet(column=spec.target, value_set=list(domain.target_values)))
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column=LABEL_COLUMN),
        gxe.ExpectColumnValuesToBeInTypeList(column=LABEL_COLUMN, type_list=list(domain.dtypes)),
    ]
    if domain.values is not None:
        exps.append(gxe.ExpectColumnValuesToBeInSet(column=LABEL_COLUMN, value_set=list(domain.values)))
    if domain.min_value is not None or domain.max_value is not None:
        exps.append(gxe.ExpectColumnValuesToBeBetween(column=LABEL_COLUMN, min_value=domain.min_value,
                                                      max_value=domain.max_value))
    if spec.positive_rate is not None:
        low, high = spec.positive_rate
        exps.append(
            gxe.ExpectColumnMeanToBeBetween(
                column=LABEL_COLUMN,
                min_value=float(low),
                max_value=float(high),
                meta={"ledgerline": f"share of '{spec.target}' == '{spec.positive_label}' (positive rate band)"},
            )
        )
    return exps


def _context(docs_dir: Path | None) -> EphemeralDataContext:
    """A fresh in-memory context: no analytics, no progress bars, docs only into ``docs_dir``."""
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict[str, Any] = {}
    if docs_dir is not None:
        sites[DOCS_SITE_NAME] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        # init_temp_docs_sites=False: the default ephemeral context points a docs site at a
        # temporary directory it never deletes; we declare our own site (or none) instead.
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def validate(
    df: pd.DataFrame, spec: DatasetSpec, *, docs_dir: Path | None = None, extra: FamilyExpectations = NO_EXTRA
) -> ValidationReport:
    """Validate ``df`` (the output of ``features.spec.conform(raw, spec)``) against the spec's suite.

    ``extra`` is what the data's family adds (``TrainingFamily.expectations()``).
    With ``docs_dir``, also build a GX Data Docs site (``index.html`` plus the suite and
    validation pages) into that folder; the report's ``data_docs_dir`` then points to it.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"validate() needs a pandas DataFrame, not {type(df).__name__}")
    started = time.perf_counter()
    gx = _import_gx()
    from great_expectations.core.run_identifier import RunIdentifier

    docs_path = Path(docs_dir).resolve() if docs_dir is not None else None
    context = _context(docs_path)
    suite = context.suites.add(build_suite(spec, extra))
    asset = context.data_sources.add_pandas(DATA_SOURCE_NAME).add_dataframe_asset(spec.name)
    batch_definition = asset.add_batch_definition_whole_dataframe("whole-dataframe")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{spec.name}-validation", data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": extra.with_derived(df, spec)},
        result_format=RESULT_FORMAT,
        run_id=RunIdentifier(run_name=spec.name),
    )
    validated = time.perf_counter()

    built_docs = _build_docs(context, docs_path) if docs_path is not None else None
    result_json = _plain_json(result.to_json_dict())
    failed = [summarize(r, max_examples=MAX_EXAMPLES) for r in result_json.get("results", []) if not r.get("success")]
    # Table-level failures (schema, row count) first: they usually explain the column-level ones.
    failures = tuple(sorted(failed, key=lambda f: f.column is not None))
    evaluated = int(result_json.get("statistics", {}).get("evaluated_expectations", len(result_json["results"])))
    report = ValidationReport(
        success=bool(result.success),
        suite_name=suite.name,
        evaluated=evaluated,
        failures=failures,
        result_json=result_json,
        data_docs_dir=built_docs,
        data_docs_page=validation_page(built_docs) if built_docs is not None else None,
    )
    logger.info(
        "validated %d rows against %s: %s (validation %.2fs, docs %.2fs)",
        len(df),
        suite.name,
        "passed" if report.success else f"{len(failures)} of {evaluated} failed",
        validated - started,
        time.perf_counter() - validated,
    )
    return report


def _plain_json(value: dict) -> dict:
    """``value`` as plain JSON types.

    GX's ``to_json_dict`` leaves numpy scalars (e.g. an observed mean as ``np.float64``) in
    place; they happen to pass ``json.dumps`` but print as ``np.float64(0.6)``. A round trip
    makes every value a plain Python one; anything JSON cannot represent becomes its text.
    """
    return json.loads(json.dumps(value, default=str))


def _build_docs(context: EphemeralDataContext, docs_dir: Path) -> Path | None:
    """Render the context's suite and validation result as a Data Docs site in ``docs_dir``.

    A site that fails to render is logged and reported as ``None``: the validation verdict
    stands on its own and must not be lost because its HTML could not be written.
    """
    try:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.build_data_docs(site_names=[DOCS_SITE_NAME])
    except Exception:
        logger.warning("could not build the Data Docs site in %s", docs_dir, exc_info=True)
        return None
    if not (docs_dir / "index.html").is_file():
        logger.warning("GX built no index.html in %s; no Data Docs for this validation", docs_dir)
        return None
    localize_docs_assets(docs_dir)
    return docs_dir


def validation_page(docs_dir: Path) -> str | None:
    """The newest validation result page of a built site, relative to ``docs_dir`` (posix), if any."""
    pages = sorted((docs_dir / "validations").glob("**/*.html"), key=lambda p: p.stat().st_mtime)
    return pages[-1].relative_to(docs_dir).as_posix() if pages else None


def localize_docs_assets(docs_dir: Path) -> None:
    """Make a Data Docs site self-contained: every CDN asset its pages load is copied into the site.

    Copies VENDOR_DIR to ``<site>/static/vendor`` and points each page's ``<script>``/``<link>``
    at it by a relative path (the site opens from a file:// URL or any folder it is copied to);
    their ``integrity``/``crossorigin`` attributes go too (a local file is not a CORS fetch).
    An asset we have no copy of is logged, so a GX upgrade that adds one shows up at once.
    """
    target = docs_dir / SITE_VENDOR
    shutil.copytree(VENDOR_DIR, target, dirs_exist_ok=True)
    for css in (docs_dir / "static" / "styles").glob("*.css"):
        text = css.read_text()
        local = _REMOTE_LOGO.sub("url('../images/logo-long.png')", text)
        if local != text:
            css.write_text(local)
    for page in docs_dir.glob("**/*.html"):
        if target in page.parents:
            continue
        prefix = os.path.relpath(target, page.parent).replace(os.sep, "/")

        def local_tag(match: re.Match[str], prefix: str = prefix) -> str:
            tag = match.group(0)
            for url, rel in VENDORED_ASSETS.items():
                if f'"{url}"' in tag:
                    tag = tag.replace(f'"{url}"', f'"{prefix}/{rel}"')
                    return re.sub(r"\s+(?:integrity=\"[^\"]*\"|crossorigin(?:=\"[^\"]*\")?)", "", tag)
            return tag

        html = page.read_text()
        localized = _ASSET_TAG.sub(local_tag, html)
        logo = os.path.relpath(docs_dir / "static" / "images" / "logo-long.png", page.parent).replace(os.sep, "/")
        localized = _REMOTE_IMG.sub(f'src="{logo}"', localized)  # the header logo (a remote fetch per view)
        localized = _REMOTE_LOGO.sub(f"url('{logo}')", localized)  # and the inline stylesheet's copy of it
        # GX writes some site-relative paths one level short on deep pages (the validation page's favicon)
        static = os.path.relpath(docs_dir / "static", page.parent).replace(os.sep, "/")
        localized = _SITE_STATIC_REF.sub(rf"\g<1>{static}/", localized)
        if localized != html:
            page.write_text(localized)
        remote = _REMOTE_ASSET.findall(localized)
        if remote:
            logger.warning("%s still loads %d asset(s) from the internet; add them to VENDORED_ASSETS", page, len(remote))
