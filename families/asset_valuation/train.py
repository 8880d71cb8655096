"""Asset valuation as a family plug-in: a numeric target (a price, a value, a yield), a time-ordered
holdout (the latest sales) when a time column is given, gradient boosting with a chosen target
transform, a market trend and per-segment models, and split-conformal intervals
(families/asset_valuation/fit.py).

The gate: MdAPE well below a naive baseline on the same holdout (the training median of the target
per segment), the interval's holdout coverage within a binomial band around its nominal level
(sized by the holdout and the calibration slice), and MdAPE and interval width no worse than the
champion's beyond a tolerance. The model is logged as an MLflow pyfunc
(families/asset_valuation/pyfunc.py) answering ``prediction``, ``prediction_lower``, ``prediction_upper``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from families.asset_valuation.settings import AssetValuationSettings
from ledgerline.errors import DataError
from ledgerline.families import GatePolicy, MetricRule, TargetKind
from training.family import FamilyParams, Report, TrainingFamilyBase, TrainOption
from training.model_logging import pip_requirements, typed_params

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from expectations.family import FamilyExpectations
    from families.asset_valuation.fit import AssetParams
    from families.asset_valuation.model import AssetValuationModel
    from features.spec import DatasetSpec, PartialSpec
    from ledgerline.settings import Settings
    from training.cards import CardParts

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.2
#: the model info key of the naive baseline: the training median of the target per segment ('' = all rows)
NAIVE_KEY = "naive_median"


def _params(params: FamilyParams) -> AssetParams:
    from families.asset_valuation.fit import AssetParams

    assert isinstance(params, AssetParams)
    return params


def _empty(values: pd.Series) -> pd.Series:
    """Cells with no value: null, or text of only spaces."""
    return values.isna() | (values.astype(str).str.strip() == "")


def naive_medians(frame: pd.DataFrame, target: str, segment: str | None) -> dict[str, float]:
    """The naive baseline: the median target per segment of the training rows, and '' for all rows."""
    import pandas as pd

    y = pd.to_numeric(frame[target], errors="coerce")
    out = {"": float(y.median())}
    if segment and segment in frame.columns:
        seg = frame[segment].astype(object).where(frame[segment].notna(), "").map(str)
        out.update({str(k): float(v) for k, v in y.groupby(seg).median().items() if k})
    return out


def naive_predictions(model: AssetValuationModel, frame: pd.DataFrame) -> np.ndarray:
    """The naive baseline's prediction of each row (its segment's training median, else the overall one)."""
    import numpy as np

    medians: Mapping[str, float] = model.info.get(NAIVE_KEY) or {}
    overall = float(medians.get("", np.nan))
    return np.array([float(medians.get(s, overall)) for s in model.segments(frame)], dtype=np.float64)


def coverage_z(coverage: float, level: float, n_test: int, n_calibration: int) -> float:
    """How many standard errors the holdout coverage is from the nominal level: a binomial standard error
    that counts both the holdout's rows and the calibration slice's (split conformal: both vary)."""
    if n_test < 1:
        return float("nan")
    se = math.sqrt(level * (1.0 - level) * (1.0 / n_test + 1.0 / max(n_calibration, 1)))
    return (coverage - level) / se if se > 0 else float("nan")


def iso_times(values: pd.Series) -> pd.Series:
    """Timestamps as ISO 8601 text (a date when every time is midnight); missing -> None."""
    import pandas as pd

    from families.asset_valuation.model import parse_dates

    stamps = parse_dates(values, str(values.name))
    midnight = bool((stamps.dropna() == stamps.dropna().dt.normalize()).all())
    text = stamps.dt.strftime("%Y-%m-%d" if midnight else "%Y-%m-%dT%H:%M:%S")
    return pd.Series(text.astype(object).where(stamps.notna(), None), index=values.index, dtype=object)


class AssetValuationFamily(TrainingFamilyBase["AssetValuationModel"]):
    name = "asset-valuation"
    target_kind: TargetKind = "numeric"
    test_fraction = TEST_FRACTION
    headline_metrics = ("mdape", "mape", "mae", "r2", "coverage", "interval_width")
    train_options = (
        TrainOption("--time-column", "the sale date column (ISO dates): the latest sales are the holdout, "
                    "and the model learns the market trend", role="time", example="sale_date"),
        TrainOption("--segment-column", "a column of kinds (e.g. the asset type) that may get their own model "
                    "and intervals", role="segment", example="asset_type"),
    )

    # --- data contract --------------------------------------------------------------
    def default_spec(self, model_name: str) -> DatasetSpec:
        from families.asset_valuation.data import default_spec

        return default_spec(model_name)

    def generate(self, rows: int, seed: int) -> pd.DataFrame:
        from families.asset_valuation.data import generate

        return generate(rows, seed)

    def infer_spec(
        self, raw: pd.DataFrame, *, target: str | None, positive_label: str | None, partial: PartialSpec, name: str
    ) -> DatasetSpec:
        """The platform's inference with a numeric target; the time column typed as datetime (ISO dates), the
        segment column as categorical; rows with an empty target are left out of it (training drops them)."""
        import dataclasses

        from features.spec import infer_spec

        roles = dict(partial.roles)
        target = target or partial.target
        if target is None:
            raise DataError("asset valuation needs --target COLUMN (the value to predict, e.g. price)")
        for role in ("time", "segment"):
            column = roles.get(role)
            if column is not None and column not in raw.columns:
                raise DataError(
                    f"--{role}-column '{column}' is not in the data; columns are {list(raw.columns)[:30]}"
                )
        if target not in raw.columns:
            raise DataError(f"target column '{target}' is not in the data; columns are {list(raw.columns)[:30]}")
        columns = {k: dict(v) for k, v in partial.columns.items()}
        if roles.get("time"):
            columns[roles["time"]] = {**columns.get(roles["time"], {}), "type": "datetime"}
        if roles.get("segment"):
            columns[roles["segment"]] = {"type": "categorical", **columns.get(roles["segment"], {})}
        partial = dataclasses.replace(partial, columns=columns, target_kind="numeric")
        labelled = raw.loc[~_empty(raw[target])]
        if labelled.empty:
            raise DataError(f"target column '{target}' is empty in every row; there is nothing to learn from")
        return infer_spec(labelled, target=target, positive_label=positive_label, partial=partial, name=name,
                          target_kind="numeric")

    def conform(self, raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        """The platform's conform on the rows that have a target (rows with an empty one are dropped and counted);
        a date cell of only spaces is empty."""
        from features.spec import conform

        if spec.target is not None and spec.target in raw.columns:
            empty = _empty(raw[spec.target])
            if empty.all():
                raise DataError(f"target column '{spec.target}' is empty in every row; there is nothing to learn from")
            if empty.any():
                logger.info("dropped %d row(s) with an empty target '%s'", int(empty.sum()), spec.target)
                raw = raw.loc[~empty]
        blank = {c: raw[c].where(~_empty(raw[c]), None) for c in spec.datetime if c in raw.columns
                 and raw[c].dtype == object}
        return conform(raw.assign(**blank) if blank else raw, spec)  # a date of only spaces is an empty cell

    def split(self, frame: pd.DataFrame, spec: DatasetSpec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The latest sales as the holdout when the spec has a time column, else a seeded random split."""
        from families.asset_valuation.fit import columns_of, time_split

        return time_split(frame, columns_of(spec).time, TEST_FRACTION, seed)

    # --- train / evaluate -------------------------------------------------------------
    def params(self, seed: int, overrides: Mapping[str, object] | None) -> FamilyParams:
        from families.asset_valuation.fit import AssetParams

        return typed_params(AssetParams(seed=seed), self.name, overrides)

    def train(self, frame: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> AssetValuationModel:
        from families.asset_valuation import fit

        model = fit.train(frame, spec, _params(params))
        model.info[NAIVE_KEY] = naive_medians(frame, model.target, model.segment_column)
        return model

    def evaluate(self, model: AssetValuationModel, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]:
        """fit.evaluate's metrics plus the naive baseline's MdAPE on the same rows, the ratio, and the coverage's
        distance from its nominal level in standard errors (``coverage_z``)."""
        import numpy as np
        import pandas as pd

        from families.asset_valuation import fit

        metrics = fit.evaluate(model, frame)
        y = pd.to_numeric(frame[model.target], errors="coerce")
        rows = frame.loc[y.notna().to_numpy()]
        yy = y.dropna().to_numpy(dtype=np.float64)
        naive = naive_predictions(model, rows)
        ok = (yy != 0) & np.isfinite(naive)
        if ok.any():
            metrics["naive_mdape"] = float(np.median(np.abs(naive[ok] - yy[ok]) / np.abs(yy[ok])))
            if metrics["naive_mdape"] > 0:
                metrics["mdape_ratio_vs_naive"] = metrics["mdape"] / metrics["naive_mdape"]
        metrics["coverage_nominal"] = model.level
        metrics["coverage_z"] = coverage_z(metrics["coverage"], model.level, int(metrics["rows"]), len(model.scores))
        return metrics

    def report(
        self, model: AssetValuationModel, frame: pd.DataFrame, spec: DatasetSpec, metrics: Mapping[str, float]
    ) -> Report:
        from families.asset_valuation import fit, plots

        described = json.loads(json.dumps(model.describe(), default=_jsonable))
        segments = fit.segment_metrics(model, frame)
        per_segment: dict[str, object] = {str(k): {c: _jsonable(v) for c, v in row.items()} for k, row in segments.iterrows()}
        params: dict[str, object] = {
            "chosen_candidate": described.get("chosen"),
            "log_target": model.log_target,
            "trend_per_year": round(model.trend_per_year, 6),
            "segment_models": ",".join(sorted(model.segment_models)) or "none",
            "interval_level": model.level,
            "calibration_rows": len(model.scores),
        }
        return Report(
            figures={f"plots/{k}": v for k, v in plots.figures(model, frame).items()},
            documents={"evaluation/segment_metrics.json": dict(per_segment), "model/description.json": described},
            params=params,
            metrics={"trend_per_year": model.trend_per_year, "segment_models": float(len(model.segment_models))},
            tags={"asset_valuation.chosen": str(described.get("chosen")),
                  "asset_valuation.segment_models": params["segment_models"]},  # type: ignore[dict-item]
        )

    # --- gate ---------------------------------------------------------------------------
    def gate_policy(self, settings: Settings) -> GatePolicy:
        g = AssetValuationSettings.of(settings.families).gate
        return GatePolicy(
            (
                MetricRule("mdape_ratio_vs_naive", "lower", bound=g.max_mdape_ratio_vs_naive),
                MetricRule("coverage_z", "higher", band=(-g.coverage_z, g.coverage_z)),
                MetricRule("mdape", "lower", tolerance=g.mdape_tolerance),
                MetricRule("interval_width", "lower", tolerance=g.width_tolerance),
            )
        )

    def expectations(self) -> FamilyExpectations:
        from families.asset_valuation.expectations import EXPECTATIONS

        return EXPECTATIONS

    # --- model I/O ------------------------------------------------------------------------
    def log_model(self, model: AssetValuationModel, frame: pd.DataFrame, spec: DatasetSpec) -> str:
        import mlflow
        from mlflow.models import infer_signature

        from families.asset_valuation.pyfunc import AssetValuationPyfunc
        from features.model_io import family_code_paths

        example = input_example(model, frame)
        wrapped = AssetValuationPyfunc(model)
        output = wrapped.predict(None, example)
        with family_code_paths(__file__) as code_paths:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=wrapped,
                signature=_optional_inputs(infer_signature(example, output, params={"interval": float(model.level)})),
                input_example=example,
                code_paths=code_paths,
                pip_requirements=pip_requirements("mlflow", "xgboost", "scikit-learn", "pandas", "numpy", "pyarrow"),
            )
        return str(info.model_uri)

    def load_model(self, model_uri: str) -> AssetValuationModel:
        from families.asset_valuation.pyfunc import load_asset_model

        return load_asset_model(model_uri)

    # --- model card -------------------------------------------------------------------------
    def card_parts(
        self, model: AssetValuationModel, frame: pd.DataFrame, spec: DatasetSpec, settings: Settings
    ) -> CardParts:
        """Holdout metrics with bootstrap intervals, the metrics per segment, what was chosen, the limits."""
        import numpy as np
        import pandas as pd

        from families.asset_valuation import fit
        from training import cards

        y_all = pd.to_numeric(frame[model.target], errors="coerce")
        rows = frame.loc[y_all.notna().to_numpy()]
        y = y_all.dropna().to_numpy(dtype=np.float64)
        pred, lower, upper = model.predict_interval(rows)
        naive = naive_predictions(model, rows)

        def metrics_of(idx: np.ndarray) -> dict[str, float]:
            yy, pp, lo, hi = y[idx], pred[idx], lower[idx], upper[idx]
            nz = yy != 0
            ape = np.abs(pp[nz] - yy[nz]) / np.abs(yy[nz])
            out = {"mae": float(np.mean(np.abs(pp - yy))), "coverage": float(np.mean((yy >= lo) & (yy <= hi)))}
            if len(ape):
                out["mdape"] = float(np.median(ape))
                out["mape"] = float(np.mean(ape))
                out["naive_mdape"] = float(np.median(np.abs(naive[idx][nz] - yy[nz]) / np.abs(yy[nz])))
            with np.errstate(divide="ignore", invalid="ignore"):
                out["interval_width"] = float(np.nanmean((hi - lo) / np.where(pp != 0, np.abs(pp), np.nan)))
            return out

        described = model.describe()
        facts = {
            "algorithm": "XGBoost regression (hist) on the tabular features plus years-since-start and month",
            "target transform": "log (predictions are medians: exp of the predicted log value)" if model.log_target
            else "none (raw target)",
            "trend": f"{model.trend_per_year:+.4f} per year ({'log' if model.log_target else 'target'} units), "
            "continued beyond the training dates" if model.trend_per_year else "none",
            "choice": f"{described.get('chosen')} by validation loss on the latest slice of the training rows "
            f"({described.get('selection_metric')})",
            "segment models": ", ".join(sorted(model.segment_models)) or "none (the pooled model serves every segment)",
            "interval": f"split-conformal at {model.level:.0%} from {len(model.scores)} later-slice residuals"
            + (f" (own scores for {', '.join(sorted(model.segment_scores))})" if model.segment_scores else ""),
        }
        sections: dict[str, str] = {}
        per = fit.segment_metrics(model, rows)
        if len(per):
            sections["Holdout metrics per segment"] = cards.table(
                [(name or "(empty)", r["model"], int(r["rows"]), f"{r['mdape']:.3f}", f"{r['mape']:.3f}",
                  f"{r['coverage']:.3f}", f"{r['interval_width']:.3f}") for name, r in per.iterrows()],
                ["segment", "model", "rows", "MdAPE", "MAPE", "coverage", "interval width"],
            )
        return cards.CardParts(
            intended_use=(
                f"Estimates the value of an asset ({model.target}) from its attributes"
                + (f" and the date ({model.time_column})" if model.time_column else "")
                + f", with a {model.level:.0%} interval and the attributes that moved the estimate most, "
                "as a valuation aid for assets like those in the training data (automated valuation, collateral "
                "checks, pricing reviews); not a substitute for an appraisal of an unusual asset."
            ),
            metrics=cards.bootstrap(len(y), metrics_of, seed=7) if len(y) else {},
            limitations=[
                "intervals are calibrated on the latest slice of the training data; they may not hold through a "
                "market break (a crash, a rate shock) until the model is retrained on data after it",
                "the trend is a straight line continued beyond the training dates; far-off dates extrapolate it",
                "assets unlike the training data (other regions, types, sizes) are out of scope; serving refuses "
                "values outside the training ranges",
                "reasons are TreeSHAP contributions of the model, in the target's units: associations, not causes",
            ],
            watched=[
                "drift of every input field and of the predicted value (PSI, Evidently)",
                "live MdAPE and interval coverage from realised values (POST /v1/feedback with the sale price)",
            ],
            sections=sections,
            model_facts=facts,
        )


def input_example(model: AssetValuationModel, frame: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
    """The first rows' input columns as a caller sends them (the time column as ISO text), and the optional
    ``interval`` field: the version's level in the first row, empty in the last (so the signature marks it optional)."""
    from families.asset_valuation.model import INTERVAL_FIELD

    example = frame[model.input_columns].head(rows).copy()
    if model.time_column:
        example[model.time_column] = iso_times(example[model.time_column])
    example = example.reset_index(drop=True)
    levels = [float(model.level)] * len(example)
    if len(levels) > 1:
        levels[-1] = float("nan")
    example[INTERVAL_FIELD] = levels
    return example


def _optional_inputs(signature: Any) -> Any:
    """The signature with every input optional: any cell may be empty in real data (the model takes NaN), so
    ``mlflow models serve`` must not refuse a null because the few example rows had none."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec(c.type, c.name, required=False) for c in signature.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=signature.outputs, params=signature.params)


def _jsonable(value: Any) -> Any:
    """numpy scalars as Python numbers (NaN as None) for JSON documents."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


FAMILY = AssetValuationFamily()
