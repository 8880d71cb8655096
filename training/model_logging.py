"""Helpers every family's training plug-in shares: typed hyper-parameter overrides, pinned pip
requirements, and logging a scikit-learn-style model in MLflow's safe skops format."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib.metadata import version as pkg_version
from typing import TYPE_CHECKING, Any, TypeVar

from features.model_io import family_code_paths
from ledgerline.errors import LedgerlineError

if TYPE_CHECKING:
    import pandas as pd
    from _typeshed import DataclassInstance

P = TypeVar("P", bound="DataclassInstance")


def typed_params(defaults: P, family: str, overrides: Mapping[str, object] | None) -> P:
    """``defaults`` (a dataclass) with string or typed overrides converted to each field's type."""
    if not overrides:
        return defaults
    fields = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise LedgerlineError(f"unknown parameter(s) {unknown} for {family}; known: {sorted(fields)}")
    typed: dict[str, object] = {}
    for key, value in overrides.items():
        current = getattr(defaults, key)
        try:
            if isinstance(current, bool):
                typed[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            else:
                typed[key] = type(current)(value)
        except (TypeError, ValueError) as exc:
            raise LedgerlineError(f"parameter {key}={value!r} is not a {type(current).__name__} (--param KEY=VALUE)") from exc
    from pydantic import ValidationError

    try:
        return dataclasses.replace(defaults, **typed)
    except ValidationError as exc:  # pydantic dataclasses check each field's range
        problems = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"parameter {key}={overrides.get(key)!r} is invalid: {err['msg'].lower()}")
        raise LedgerlineError("; ".join(problems) + " (--param KEY=VALUE)") from None


def log_skops_model(
    model: Any,
    example: pd.DataFrame,
    packages: tuple[str, ...],
    trusted_types: list[str],
    family_file: str,
    predict_fn: str = "predict_proba",
) -> str:
    """Log a scikit-learn-style model (answering with ``predict_fn``) to the active run in MLflow's safe skops format, with
    its signature, an input example, ``features/`` and the family's folder as code and pinned requirements;
    returns its model URI. ``family_file`` is any module of the family's folder (its ``__file__``)."""
    import mlflow
    from mlflow.models import infer_signature

    with family_code_paths(family_file) as code_paths:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, getattr(model, predict_fn)(example)),
            input_example=example,
            pyfunc_predict_fn=predict_fn,
            code_paths=code_paths,
            pip_requirements=pip_requirements(*packages),
            serialization_format="skops",
            skops_trusted_types=trusted_types,
        )
    return str(info.model_uri)


def pip_requirements(*packages: str) -> list[str]:
    return [f"{p}=={pkg_version(p)}" for p in packages]
