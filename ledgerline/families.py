"""The one registry of model families, and the family-neutral types every layer shares.

A family is a plug-in with one module per layer, found by convention under the family's
module stem: ``training.families.<stem>``, ``serving.families.<stem>`` and
``monitoring.families.<stem>``, each exposing ``FAMILY`` (an object implementing that
layer's protocol). Adding a family adds those files and one line to :data:`FAMILIES`.

This module is foundation: it imports nothing of the domain packages, so the lookup by
module path happens in each layer (``training.families.get_family`` and friends).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from ledgerline import lineage
from ledgerline.errors import LedgerlineError

#: family name -> module stem of its plug-in modules in each layer
FAMILIES: dict[str, str] = {
    "credit-risk": "credit_risk",
    "transaction-anomaly": "transaction_anomaly",
    "transaction-category": "transaction_category",
    "spending-forecast": "spending_forecast",
}

#: families whose training plug-in implements ``ChunkedTraining``: their retrain DAG maps over
#: chunks of series (read when DAG files are parsed, so no plug-in is imported for it;
#: tests/unit/test_chunked_training.py keeps it equal to the plug-ins)
CHUNKED_TRAINING: frozenset[str] = frozenset({"spending-forecast"})

#: the registry tag that carries a version's family
FAMILY_TAG = lineage.FAMILY

P = TypeVar("P")
TargetKind = Literal["binary", "multiclass", "none", "timeseries"]
Direction = Literal["higher", "lower"]


class UnknownFamily(LedgerlineError):
    """A family name that is not in the registry, or a model version that names none."""


def family_stem(name: str) -> str:
    """The module stem of a registered family; an unknown name is an error naming the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(f"unknown model family '{name}'; known families: {sorted(FAMILIES)}") from None


def load_plugin(layer: str, name: str, protocol: type[P]) -> P:
    """``<layer>.families.<stem>.FAMILY`` of a registered family, checked against the layer's protocol.

    The registry names modules, and each layer asks for its own; so this foundation module
    imports no domain code by name, and a family without a plug-in for a layer says so.
    """
    stem = family_stem(name)
    module_name = f"{layer}.families.{stem}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnknownFamily(f"model family '{name}' has no {layer} plug-in ({layer}/families/{stem}.py)") from None
    family = getattr(module, "FAMILY", None)
    if not isinstance(family, protocol):
        raise UnknownFamily(f"{module_name} does not define FAMILY implementing {protocol.__name__}")
    return family


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
