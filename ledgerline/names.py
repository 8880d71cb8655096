"""Model and dataset names: one rule, checked before any work, because names become paths and registry keys."""

from __future__ import annotations

import re

from ledgerline.errors import InvalidName

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


def check_model_name(name: object, *, what: str = "model name") -> str:
    """``name`` if it is a safe model name, else a LedgerlineError saying what is allowed.

    Letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most 64
    characters, and no ``..``: the name is used as a folder and file name under the data
    folder and as the MLflow registered model name.
    """
    text = str(name) if isinstance(name, str) else None
    if text is None or not _MODEL_NAME.fullmatch(text) or ".." in text:
        raise InvalidName(
            f"{what} {name!r} is not allowed; use 1-64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit and without '..' (e.g. --model-name my-credit)"
        )
    return text
