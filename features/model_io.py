"""The one loader of logged models, for every family and every layer (training's gate,
monitoring, serving): ``mlflow.sklearn.load_model`` on a ``models:/`` or ``runs:/`` URI or
a downloaded model folder; and the code a family's logged model carries.

Our own classes travel inside the models (``code_paths``: ``features/`` and the family's
folder as ``families/<stem>/``); our packages are imported first, so the logged copy never
shadows them, and ``sys.path`` is restored after the load, so long-lived processes (Airflow
workers, serving) do not collect one temporary folder per load. Models logged before families
had folders name their classes by the old module paths; the registry's aliases resolve them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ledgerline.errors import RegistryError
from ledgerline.families import FAMILIES, family_module, install_legacy_aliases

FEATURES_DIR = Path(__file__).resolve().parent
T = TypeVar("T")


def load_model(source: str | Path) -> object:
    """The model object logged at ``source`` (a model URI or a local MLflow model folder)."""
    import mlflow.sklearn

    import features.transform  # noqa: F401  - ours first: the model's copies are never imported

    prepare_model_imports()
    saved = list(sys.path)
    try:
        return mlflow.sklearn.load_model(str(source))
    finally:
        sys.path[:] = saved


def load_model_as(source: str | Path, model_class: type[T]) -> T:
    """:func:`load_model`, checked to be a ``model_class`` (a family's plug-in loads its own models)."""
    model = load_model(source)
    if not isinstance(model, model_class):
        raise RegistryError(
            f"the model at {source} is a {type(model).__name__}, not a {model_class.__name__}; "
            "it was logged by another model family: check the version's family tag"
        )
    return model


def prepare_model_imports() -> None:
    """Every family's model classes imported from this installation (never from a model's copy), and
    the old module paths aliased; call before unpickling a logged model."""
    install_legacy_aliases()
    for name in FAMILIES:
        family_module(name, "model")


@contextmanager
def family_code_paths(family_file: str) -> Iterator[list[str]]:
    """``code_paths`` for ``log_model``: ``features/`` and the family's folder (``family_file`` is any
    module in it) as ``families/<stem>/``, so the model's classes import by the same names anywhere."""
    family_dir = Path(family_file).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "families"
        package.mkdir()
        shutil.copy(family_dir.parent / "__init__.py", package / "__init__.py")
        shutil.copytree(family_dir, package / family_dir.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        yield [str(FEATURES_DIR), str(package)]
