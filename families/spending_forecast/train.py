"""Spending and cash-flow forecasts over many series as a family plug-in.

Per series, seasonal naive, Theta and Prophet compete in a rolling-origin backtest; each series
keeps what its backtest favours, and intervals are calibrated from the backtest residuals
(families/spending_forecast/fit.py). One registered version holds every series' model, a forecast table up
to the maximum horizon with 80 % and 95 % intervals, the holdout forecasts and the lineage per
series.

The family's "test split" is the last backtest window of each series: :meth:`split` returns the
whole history for training (the model's holdout forecasts come from fits that stopped at the
window's origin) and that window as the test rows, so the pipeline's evaluate and gate work
unchanged. Training is chunked over series (:class:`training.family.ChunkedTraining`):
``train`` plans chunks, trains them in worker processes and gathers the parts; the Airflow DAG
maps a task over the same chunks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerline.errors import DataError
from ledgerline.families import GatePolicy, MetricRule, TargetKind
from training.family import FamilyParams, Report, TrainingFamilyBase, TrainOption
from training.model_logging import pip_requirements, typed_params

if TYPE_CHECKING:
    import pandas as pd

    from expectations.family import FamilyExpectations
    from families.spending_forecast.model import ForecastModel
    from features.spec import DatasetSpec, PartialSpec
    from ledgerline.settings import Settings
    from training.cards import CardParts
    from training.sources.window import Interval

COVERAGE_BAND = {"coverage_80": (0.70, 0.90), "coverage_95": (0.88, 0.99)}
SERIES_LENGTH = 60  # months per generated series (some are shorter)


def _ss(spec: DatasetSpec):  # noqa: ANN202 - families.spending_forecast.data.SeriesSpec, imported lazily
    from families.spending_forecast.data import series_spec_of

    return series_spec_of(spec)


def _params(params: FamilyParams):  # noqa: ANN202
    from families.spending_forecast.fit import ForecastParams

    assert isinstance(params, ForecastParams)
    return params


def _progress(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class SpendingForecastFamily(TrainingFamilyBase["ForecastModel"]):
    name = "spending-forecast"
    target_kind: TargetKind = "timeseries"
    test_fraction = 0.2  # not a row share: the last backtest window of each series is the test split
    headline_metrics = ("mase", "mase_ratio_vs_naive", "smape", "wape", "coverage_80", "coverage_95")
    train_options = (
        TrainOption("--series-column", "the column naming each series", role="series", required=True, example="series_id"),
        TrainOption("--time-column", "the date column", role="timestamp", required=True, example="ds"),
        TrainOption("--freq", "month starts, weeks or days", setting="freq", choices=("MS", "W", "D"), fixed=True,
                    required=True, example="MS"),
        TrainOption("--horizon", "periods to forecast (the registered table's length)", setting="horizon", type=int,
                    fixed=True, required=True, example="12"),
        TrainOption("--allow-negative", "values may be negative (cash flow)", setting="allow_negative", switch=True),
    )

    def check_options(self, given: Mapping[str, Any], has_data: bool) -> dict[str, Any]:
        """The series columns, frequency and horizon go together with --data; the horizon fits the frequency."""
        from families.spending_forecast.data import check_horizon

        checked = super().check_options(given, has_data)
        if has_data:
            check_horizon(str(checked["freq"]), int(checked["horizon"]))
        return checked

    # --- data contract --------------------------------------------------------------
    def default_spec(self, model_name: str) -> DatasetSpec:
        from families.spending_forecast.data import series_dataset_spec

        return series_dataset_spec(model_name, freq="MS", horizon=12)

    def generate(self, rows: int, seed: int) -> pd.DataFrame:
        from families.spending_forecast.data import generate_spending

        return generate_spending(max(6, rows // SERIES_LENGTH), seed, months=SERIES_LENGTH)

    def infer_spec(
        self, raw: pd.DataFrame, *, target: str | None, positive_label: str | None, partial: PartialSpec, name: str
    ) -> DatasetSpec:
        from families.spending_forecast.data import series_block
        from features.spec import ColumnSpec, DatasetSpec

        roles = dict(partial.roles)
        block = dict(partial.series or {})
        series_col, time_col = roles.get("series"), roles.get("timestamp")
        value_col = target or partial.target or roles.get("value")
        if not series_col or not time_col or not value_col:
            raise DataError(
                "a series dataset needs --series-column, --time-column and --target (the value column); "
                f"columns are {list(raw.columns)}"
            )
        missing = [c for c in (series_col, time_col, value_col) if c not in raw.columns]
        if missing:
            raise DataError(f"the data lacks columns {missing}; columns are {list(raw.columns)}")
        if "freq" not in block or "horizon" not in block:
            raise DataError("a series dataset needs --freq (MS, W or D) and --horizon (periods to forecast)")
        allow_negative = bool(block.get("allow_negative", False))
        ser = series_block(str(block["freq"]), int(block["horizon"]),
                           min_length=block.get("min_length"), allow_negative=allow_negative)
        return DatasetSpec(
            name=partial.name or name,
            target=None,
            positive_label=None,
            columns=(
                ColumnSpec(series_col, "categorical"),
                ColumnSpec(time_col, "datetime"),
                ColumnSpec(value_col, "numeric", min=None if allow_negative else 0.0),
            ),
            drop=tuple(c for c in raw.columns if c not in (series_col, time_col, value_col)),
            min_rows=int(ser["min_length"]),
            roles={"series": series_col, "timestamp": time_col, "value": value_col},
            series=ser,
        )

    def conform(self, raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        from families.spending_forecast.data import check_series, sort_series
        from features.spec import conform

        ss = _ss(spec)
        frame = conform(raw, spec)
        check_series(frame, ss)  # duplicates, gaps, off-grid dates, short series, negatives: before anything is written
        return sort_series(frame, ss)

    def split(self, frame: pd.DataFrame, spec: DatasetSpec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        ss = _ss(spec)
        tail = frame.groupby(ss.series, sort=False, group_keys=False).tail(ss.backtest_horizon)
        return frame, tail

    # --- chunked training -------------------------------------------------------------
    def plan_chunks(self, frame: pd.DataFrame, spec: DatasetSpec, max_chunks: int) -> list[list[str]]:
        from families.spending_forecast.fit import plan_chunks

        return plan_chunks(frame, _ss(spec), max_chunks)

    def chunk_rows(self, frame: pd.DataFrame, spec: DatasetSpec, keys: Sequence[str]) -> pd.DataFrame:
        ss = _ss(spec)
        return frame[frame[ss.series].astype(str).isin(set(keys))]

    def train_chunk(self, frame: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> object:
        from families.spending_forecast.fit import train_chunk

        return train_chunk(frame, _ss(spec), _params(params))

    def gather(self, parts: Sequence[object], spec: DatasetSpec, params: FamilyParams) -> ForecastModel:
        from families.spending_forecast.fit import ChunkPart, gather

        typed = [p for p in parts if isinstance(p, ChunkPart)]
        if len(typed) != len(parts):
            raise DataError("gather takes the parts train_chunk returned")
        return gather(typed, _ss(spec), _params(params))

    # --- train / evaluate -------------------------------------------------------------
    def params(self, seed: int, overrides: Mapping[str, object] | None) -> FamilyParams:
        from families.spending_forecast.fit import ForecastParams

        return typed_params(ForecastParams(seed=seed), self.name, overrides)

    def train(self, frame: pd.DataFrame, spec: DatasetSpec, params: FamilyParams) -> ForecastModel:
        """plan -> train_chunk in worker processes -> gather, with progress per chunk."""
        p = _params(params)
        chunks = self.plan_chunks(frame, spec, p.max_chunks)
        n_series = sum(len(c) for c in chunks)
        t0 = time.perf_counter()
        parts: list[object] = []
        if p.workers <= 1 or len(chunks) <= 1:
            for i, keys in enumerate(chunks, 1):
                parts.append(self.train_chunk(self.chunk_rows(frame, spec, keys), spec, p))
                _progress(f"  chunk {i}/{len(chunks)} done ({len(keys)} series, {time.perf_counter() - t0:.1f}s)")
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context("fork")
            done: dict[int, object] = {}
            with ProcessPoolExecutor(max_workers=min(p.workers, len(chunks)), mp_context=ctx) as pool:
                futures = {
                    pool.submit(self.train_chunk, self.chunk_rows(frame, spec, keys), spec, p): i
                    for i, keys in enumerate(chunks)
                }
                for fut in as_completed(futures):
                    i = futures[fut]
                    done[i] = fut.result()
                    _progress(f"  chunk {len(done)}/{len(chunks)} done ({len(chunks[i])} series, {time.perf_counter() - t0:.1f}s)")
            parts = [done[i] for i in range(len(chunks))]
        model = self.gather(parts, spec, p)
        _progress(f"  {n_series} series backtested and fitted in {time.perf_counter() - t0:.1f}s")
        return model

    def evaluate(self, model: ForecastModel, frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]:
        from families.spending_forecast.fit import score

        metrics = score(model, frame, _ss(spec))
        chosen = model.lineage["chosen"].value_counts(normalize=True)
        for name in ("snaive", "theta", "prophet"):
            metrics[f"share_{name}"] = float(chosen.get(name, 0.0))
        return metrics

    def card_parts(self, model: ForecastModel, frame: pd.DataFrame, spec: DatasetSpec, settings: Settings) -> CardParts:
        """Holdout errors with intervals from a bootstrap over series (a series is the unit users meet)."""
        import numpy as np
        import pandas as pd

        from families.spending_forecast.fit import holdout_rows
        from training import cards

        ss = _ss(spec)
        j, scales, _ = holdout_rows(model, frame, ss)
        err = (j["y"] - j["yhat"]).abs().to_numpy()
        scale = j["series_id"].map(scales).fillna(1.0).to_numpy()
        per = pd.DataFrame({
            "s": j["series_id"].to_numpy(), "scaled": err / scale, "err": err, "abs_y": j["y"].abs().to_numpy(),
            "in80": ((j["y"] >= j["lower_80"]) & (j["y"] <= j["upper_80"])).to_numpy(dtype=float),
            "in95": ((j["y"] >= j["lower_95"]) & (j["y"] <= j["upper_95"])).to_numpy(dtype=float), "n": 1.0,
        }).groupby("s").agg({"scaled": "mean", "err": "sum", "abs_y": "sum", "in80": "sum", "in95": "sum", "n": "sum"})
        a = {c: per[c].to_numpy() for c in per.columns}

        def metrics_of(idx: np.ndarray) -> dict[str, float]:
            n = a["n"][idx].sum()
            return {
                "mase": float(a["scaled"][idx].mean()),
                "wape": float(a["err"][idx].sum() / max(a["abs_y"][idx].sum(), 1e-9)),
                "coverage_80": float(a["in80"][idx].sum() / max(n, 1.0)),
                "coverage_95": float(a["in95"][idx].sum() / max(n, 1.0)),
            }

        chosen = model.lineage["chosen"].value_counts()
        return cards.CardParts(
            intended_use=(
                "Forecasts each series (e.g. a customer's monthly spending in a category, or daily cash flow) up to "
                f"{ss.horizon} periods ahead with 80 % and 95 % intervals, for budgeting and planning views; "
                "each series uses the model its own rolling-origin backtest favoured."
            ),
            metrics=cards.bootstrap(len(per), metrics_of, seed=7) if len(per) else {},
            limitations=[
                "a series the version was not trained on gets no forecast (retrain with its history)",
                "intervals are calibrated on pooled backtest errors: a series with unusual volatility can be over- or under-covered",
                "structural breaks after the training history are not anticipated; monitoring compares live errors with the backtest",
                "series with a single backtest origin choose their model on the window they are scored on (lineage: selection_in_sample)",
            ],
            watched=[
                "live WAPE and MASE from posted actuals against the backtest, per series and overall",
                "the share of series forecasting much worse than their backtest",
            ],
            model_facts={
                "candidates": "seasonal naive, Theta, Prophet (per series, by rolling-origin backtest)",
                "chosen models": ", ".join(f"{k} {int(v)}" for k, v in chosen.items()),
                "frequency and horizon": f"{ss.freq}, {ss.horizon}",
            },
        )

    def report(
        self, model: ForecastModel, frame: pd.DataFrame, spec: DatasetSpec, metrics: Mapping[str, float]
    ) -> Report:
        from families.spending_forecast import plots as forecast_plots

        fm = model
        figures = {
            "plots/backtest_samples.png": forecast_plots.backtest_samples(fm, frame, _ss(spec)),
            "plots/mase_histogram.png": forecast_plots.mase_histogram(fm),
            "plots/chosen_models.png": forecast_plots.chosen_models(fm),
        }
        lineage = fm.lineage
        documents: dict[str, dict[str, object]] = {
            "evaluation/lineage_per_series.json": {
                "columns": list(lineage.columns),
                "rows": lineage.astype(object).where(lineage.notna(), None).to_numpy().tolist(),
            },
            "evaluation/chosen_models.json": {k: int(v) for k, v in lineage["chosen"].value_counts().items()},
            "evaluation/interval_quantiles.json": {
                "table": fm.quantiles,
                "holdout": fm.meta.get("holdout_quantiles"),
            },
        }
        return Report(figures=figures, documents=documents)

    # --- gate ---------------------------------------------------------------------------
    def gate_policy(self, settings: Settings) -> GatePolicy:
        return GatePolicy(
            (
                # better than seasonal naive on the holdout window, on average over series
                MetricRule("mase_ratio_vs_naive", "lower", bound=1.0),
                MetricRule("coverage_80", "higher", band=COVERAGE_BAND["coverage_80"]),
                MetricRule("coverage_95", "higher", band=COVERAGE_BAND["coverage_95"]),
                MetricRule("mase", "lower", tolerance=0.05),
                MetricRule("wape", "lower", tolerance=0.02),
            )
        )

    def expectations(self) -> FamilyExpectations:
        from families.spending_forecast.expectations import EXPECTATIONS

        return EXPECTATIONS

    def production_rows(
        self, settings: Settings, model_name: str, spec: DatasetSpec, labelled: pd.DataFrame, *, interval: Interval
    ) -> pd.DataFrame:
        """The realised values sent back for the window's dates (``forecast_actuals``, received before the
        window's end) as series rows; forecasts get no feedback labels, so ``labelled`` is not used."""
        import pandas as pd
        import sqlalchemy as sa

        from families.spending_forecast import tables
        from families.spending_forecast.data import series_spec_of
        from ledgerline import db

        ss = series_spec_of(spec)
        t = tables.forecast_actuals.c
        q = (
            sa.select(t.series_id, t.ds, t.y)
            .where(t.model_name == model_name, t.ds >= interval.start.date(), t.ds <= interval.ds,
                   t.received_at < interval.end)
            .order_by(t.series_id, t.ds)
        )
        with db.engine_for(settings.resolved_app_db_url()).connect() as conn:
            rows = conn.execute(q).all()
        return pd.DataFrame({
            ss.series: pd.Series([str(r.series_id) for r in rows], dtype=object),
            ss.timestamp: pd.to_datetime(pd.Series([r.ds for r in rows], dtype=object)),
            ss.value: pd.Series([float(r.y) for r in rows], dtype="float64"),
        })

    # --- model I/O ------------------------------------------------------------------------
    def log_model(self, model: ForecastModel, frame: pd.DataFrame, spec: DatasetSpec) -> str:
        import tempfile

        import mlflow
        import pandas as pd
        from mlflow.models import infer_signature

        from families.spending_forecast.pyfunc import ForecastPyfunc
        from features.model_io import family_code_paths

        first = str(model.lineage["series_id"].iloc[0])
        example = pd.DataFrame({"series_id": [first], "horizon": [float(model.horizon)], "interval": [0.8]})
        output = model.frame(int(model.horizon), 0.8, [first])
        with tempfile.TemporaryDirectory() as tmp, family_code_paths(__file__) as code_paths:
            folder = model.save(Path(tmp) / "forecast")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ForecastPyfunc(),
                artifacts={"forecast": str(folder)},
                signature=infer_signature(example, output),
                input_example=example,
                code_paths=code_paths,
                pip_requirements=pip_requirements("mlflow", "pandas", "numpy", "pyarrow"),
            )
            lineage_csv = Path(tmp) / "lineage_per_series.csv"
            model.lineage.to_csv(lineage_csv, index=False)
            mlflow.log_artifact(str(lineage_csv), "evaluation")
        return str(info.model_uri)

    def load_model(self, model_uri: str) -> ForecastModel:
        from families.spending_forecast.model import load_forecast_model

        return load_forecast_model(model_uri)


FAMILY = SpendingForecastFamily()
