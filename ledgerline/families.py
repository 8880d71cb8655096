"""The one registry of model families, and the family-neutral types every layer shares.

A family is one folder, ``families/<stem>/`` (the stem from :data:`FAMILIES`), holding
everything of it: the classes inside its logged models, its generator and spec, pure
fit/evaluate and plots, and one plug-in module per layer, each exposing ``FAMILY`` (an
object implementing that layer's protocol): ``train.py`` (:class:`training.family.TrainingFamily`),
``serve.py`` (:class:`serving.family.ServingFamily`) and ``monitor.py``
(:class:`monitoring.family.MonitoringFamily`); optionally ``routes.py`` (an APIRouter the
serving app mounts) and ``settings.py``. Adding a family adds its folder and one line to
:data:`FAMILIES`.

This module is foundation: it imports no family and no domain package by name; each layer
asks for its own plug-in through :func:`load_plugin`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Literal, TypeVar

from ledgerline import lineage
from ledgerline.errors import LedgerlineError

#: family name -> module stem of its plug-in modules in each layer
FAMILIES: dict[str, str] = {
    "credit-risk": "credit_risk",
    "transaction-anomaly": "transaction_anomaly",
    "transaction-category": "transaction_category",
    "spending-forecast": "spending_forecast",
    "asset-valuation": "asset_valuation",
}

#: layer -> the module of a family's folder that holds that layer's plug-in (``FAMILY``)
PLUGIN_MODULES: dict[str, str] = {"training": "train", "serving": "serve", "monitoring": "monitor"}

#: Module paths of the layout before families had folders -> where that code lives now. Versions
#: registered before the move pickled classes under the old paths (skops, cloudpickle); the model
#: loaders call :func:`install_legacy_aliases` so those paths resolve to today's modules.
LEGACY_MODULES: dict[str, str] = {
    "features.generator": "families.credit_risk.data",
    "features.scorecard": "families.credit_risk.model",
    "features.transactions": "families.transaction_anomaly.data",
    "features.detector": "families.transaction_anomaly.model",
    "features.behaviour": "families.transaction_anomaly.behaviour",
    "features.categories": "families.transaction_category.data",
    "features.category_model": "families.transaction_category.model",
    "features.corrections": "families.transaction_category.corrections",
    "features.series": "families.spending_forecast.data",
    "features.forecast_model": "families.spending_forecast.model",
    "features.forecast_pyfunc": "families.spending_forecast.pyfunc",
}

#: families whose training plug-in implements ``ChunkedTraining``: their retrain DAG maps over
#: chunks of series (read when DAG files are parsed, so no plug-in is imported for it;
#: tests/unit/test_chunked_training.py keeps it equal to the plug-ins)
CHUNKED_TRAINING: frozenset[str] = frozenset({"spending-forecast"})

#: the registry tag that carries a version's family
FAMILY_TAG = lineage.FAMILY

P = TypeVar("P")
TargetKind = Literal["binary", "multiclass", "numeric", "none", "timeseries"]
Direction = Literal["higher", "lower"]


class UnknownFamily(LedgerlineError):
    """A family name that is not in the registry, or a model version that names none."""


def family_stem(name: str) -> str:
    """The module stem of a registered family; an unknown name is an error naming the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(f"unknown model family '{name}'; known families: {sorted(FAMILIES)}") from None


def family_module(name: str, module: str) -> ModuleType | None:
    """``families.<stem>.<module>`` of a registered family, or None when the family has no such module."""
    module_name = f"families.{family_stem(name)}.{module}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None


def load_plugin(layer: str, name: str, protocol: type[P]) -> P:
    """``families.<stem>.<train|serve|monitor>.FAMILY`` of a registered family, checked against the layer's protocol.

    The registry names modules, and each layer asks for its own; so this foundation module
    imports no domain code by name, and a family without a plug-in for a layer says so.
    """
    stem = family_stem(name)
    module = family_module(name, PLUGIN_MODULES[layer])
    module_name = f"families.{stem}.{PLUGIN_MODULES[layer]}"
    if module is None:
        raise UnknownFamily(f"model family '{name}' has no {layer} plug-in (families/{stem}/{PLUGIN_MODULES[layer]}.py)")
    family = getattr(module, "FAMILY", None)
    if not isinstance(family, protocol):
        raise UnknownFamily(f"{module_name} does not define FAMILY implementing {protocol.__name__}")
    return family


class _LegacyAliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module path of :data:`LEGACY_MODULES` to the module that holds its code now."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LEGACY_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(LEGACY_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its own name."""


_LEGACY_FINDER = _LegacyAliases()


def install_legacy_aliases() -> None:
    """Let models pickled under the old module paths load (idempotent; the model loaders call it)."""
    if _LEGACY_FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _LEGACY_FINDER)


def family_from_tags(tags: Mapping[str, str] | None, what: str) -> str:
    """The family a registered version or run records in its tags; never a silent default."""
    name = (tags or {}).get(FAMILY_TAG)
    if not name:
        raise UnknownFamily(
            f"{what} carries no '{FAMILY_TAG}' tag, so its model family is unknown; "
            f"set the tag to one of {sorted(FAMILIES)} (MLflow UI or MlflowClient.set_model_version_tag)"
        )
    family_stem(name)
    return name


# --------------------------------------------------------------------------- metric rules


@dataclass(frozen=True)
class MetricRule:
    """One gated (or monitored) metric: which way is better, an absolute bound, a band, a tolerance.

    ``bound`` is a floor when higher is better and a ceiling when lower is better; ``band``
    is an interval the value must lie in whatever the direction (e.g. an alert rate);
    ``tolerance`` is how much worse than the champion (or the offline baseline) it may be.
    A rule whose metric is missing from the challenger's metrics fails: a gate never
    passes on a metric it could not see.
    """

    metric: str
    direction: Direction
    bound: float | None = None
    band: tuple[float, float] | None = None
    tolerance: float | None = None
    required: bool = True  # False: skipped (with a note) when the metric is absent, e.g. no labels

    def worse_by(self, value: float, reference: float) -> float:
        """How much worse ``value`` is than ``reference`` (negative: better)."""
        return reference - value if self.direction == "higher" else value - reference

    def check_absolute(self, value: float) -> tuple[bool, str]:
        ok = math.isfinite(value)
        parts: list[str] = []
        if self.bound is not None:
            within = value >= self.bound if self.direction == "higher" else value <= self.bound
            ok = ok and within
            word = "floor" if self.direction == "higher" else "ceiling"
            sign = (">=" if within else "<") if self.direction == "higher" else ("<=" if within else ">")
            parts.append(f"{self.metric} {value:.4f} {sign} {word} {self.bound:.4f}")
        if self.band is not None:
            lo, hi = self.band
            inside = lo <= value <= hi
            ok = ok and inside
            parts.append(f"{self.metric} {value:.4f} {'inside' if inside else 'outside'} band [{lo:.4f}, {hi:.4f}]")
        if not math.isfinite(value):
            parts.append(f"{self.metric} is not a number ({value})")
        return ok, "; ".join(parts)

    def check_against(self, value: float, reference: float, what: str) -> tuple[bool, str]:
        tol = self.tolerance or 0.0
        ok = self.worse_by(value, reference) <= tol
        return ok, (
            f"{self.metric} {value:.4f} {'within' if ok else 'worse than'} tolerance {tol:.4f} "
            f"of {what} ({reference:.4f})"
        )


@dataclass(frozen=True)
class GatePolicy:
    """The metrics a family's gate checks, in order."""

    rules: tuple[MetricRule, ...]

    def rule(self, metric: str) -> MetricRule:
        for r in self.rules:
            if r.metric == metric:
                return r
        raise KeyError(metric)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, object]] | None) -> GatePolicy:
        """Per family or per model changes, e.g. ``{"roc_auc": {"bound": 0.75, "tolerance": 0.02}}``."""
        if not overrides:
            return self
        known = {r.metric for r in self.rules}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise LedgerlineError(f"gate overrides name unknown metrics {unknown}; this gate checks {sorted(known)}")
        out = []
        for r in self.rules:
            change = dict(overrides.get(r.metric) or {})
            bad = sorted(set(change) - {"bound", "band", "tolerance"})
            if bad:
                raise LedgerlineError(f"gate override for {r.metric}: unknown keys {bad}; use bound, band or tolerance")
            try:
                band = change.get("band")
                if band is not None:
                    pair = list(band)  # type: ignore[call-overload]
                    if len(pair) != 2:
                        raise ValueError("a band is [low, high]")
                    change["band"] = (float(pair[0]), float(pair[1]))
                for key in ("bound", "tolerance"):
                    if change.get(key) is not None:
                        change[key] = float(change[key])  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raise LedgerlineError(f"gate override for {r.metric} is not numeric: {change}") from exc
            out.append(replace(r, **change))  # type: ignore[arg-type]
        return GatePolicy(tuple(out))
