"""``ledgerline forecast``: NAME@champion's precomputed forecast written to a file, whole or not at all."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledgerline.errors import LedgerlineError

if TYPE_CHECKING:
    from ledgerline.settings import Settings

FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class Written:
    version: str
    rows: int
    series: int


def check_request(horizon: int, interval: float, output: Path) -> None:
    from families.spending_forecast.model import level_key

    if horizon < 1:
        raise LedgerlineError(f"--horizon must be at least 1 period, not {horizon}")
    level_key(interval)  # 0.8 or 0.95
    if output.suffix.lower() not in FORMATS:
        raise LedgerlineError(f"cannot write {output}: unsupported file type '{output.suffix}'; use .csv or .parquet")
    if output.is_dir():
        raise LedgerlineError(f"--output {output} is a folder; pass a file name ending in .csv or .parquet")
    if not output.parent.is_dir():
        raise LedgerlineError(f"the folder of --output {output} does not exist; create it first")


def write_forecast(
    settings: Settings, name: str, *, horizon: int, interval: float, output: Path, series: list[str] | None = None
) -> Written:
    import mlflow
    from mlflow.exceptions import MlflowException

    from families.spending_forecast.model import load_forecast_model
    from ledgerline.families import family_from_tags
    from ledgerline.registry import CHAMPION, alias_version, client

    check_request(horizon, interval, output)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri())
    c = client(settings)
    try:
        version = alias_version(c, name, CHAMPION)
    except MlflowException as exc:
        raise LedgerlineError(f"cannot read model {name} from the registry: {exc.message}") from exc
    if version is None:
        raise LedgerlineError(f"model {name} has no @champion (or does not exist); train it first: "
                              f"ledgerline train spending-forecast --model-name {name}")
    family = family_from_tags(c.get_model_version(name, version).tags, f"{name} v{version}")
    if family != "spending-forecast":
        raise LedgerlineError(f"{name} is a {family} model; ledgerline forecast needs a forecasting model "
                              f"(use ledgerline score for {family})")
    model = load_forecast_model(f"models:/{name}/{version}")
    if horizon > model.horizon:
        raise LedgerlineError(f"--horizon {horizon} is beyond {name} v{version}'s horizon of {model.horizon} periods; "
                              f"ask for at most {model.horizon}, or retrain with --horizon {horizon}")
    if series:
        unknown = [s for s in series if not model.knows(s)]
        if unknown:
            raise LedgerlineError(f"{name} v{version} has no series {unknown[:3]}; it knows {len(model.series_ids)} "
                                  f"series (e.g. {model.series_ids[:2]})")
    frame = model.frame(horizon, interval, series)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(fd)
    try:
        if output.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, output)  # the file appears whole or not at all
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Written(version=version, rows=len(frame), series=int(frame["series_id"].nunique()))
