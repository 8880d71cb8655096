"""Benchmark: the drift job's path vs a direct Evidently ``DataDriftPreset`` run on the same frames.

    python benchmarks/bench_drift.py                 # 100,000-row window vs 100,000-row reference
    python benchmarks/bench_drift.py --rows 1000000  # scaling

What is timed as "job" is what ``monitoring.jobs.run_drift_job`` does between resolving the
champion and logging to MLflow, with the same functions: read the window from the Postgres
prediction log (``monitoring.data.load_prediction_window``), the reference
(``monitoring.data.load_reference``: the snapshot Parquet conformed to the spec and scored,
then cached per champion version) and ``monitoring.drift.compute_drift`` (PSI of every feature
and of the score on all rows, the Evidently report on a sample, its HTML). It runs twice: cold
(first run for a champion: conform + score + write the cache) and warm (every later run). The
"model" is a fixed logistic score of four features, so its scoring cost is near zero; the
MLflow upload (about 5 MB of HTML) is not timed.

The frames have 20 features: the credit generator's 10 (8 numeric, 2 categorical) plus 7
numeric (4 derived from the credit columns, 3 drawn independently) and 3 categorical ones;
the window has income x1.3 and utilisation +0.1 drift. The benchmark creates its own Postgres
database and drops it afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from families.credit_risk.data import credit_spec, generate_loan_applications  # noqa: E402
from features.spec import ColumnSpec, DatasetSpec  # noqa: E402

ADMIN_URL = os.environ.get("LEDGERLINE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MODEL = "bench-credit"
REGIONS = tuple(f"region_{i}" for i in range(8))
CHANNELS = ("web", "branch", "broker", "mobile")
VERIFICATION = ("verified", "source_verified", "not_verified")


def wide_applications(n: int, seed: int, *, income_shift: float = 1.0, utilization_shift: float = 0.0) -> pd.DataFrame:
    """20 features + ``default`` + ``score`` (a fixed logistic risk score standing in for the model)."""
    df = generate_loan_applications(n, seed, income_shift=income_shift, utilization_shift=utilization_shift)
    rng = np.random.default_rng(seed + 1_000)
    df["loan_to_income"] = (df.loan_amount / df.annual_income).round(4)
    rate = np.clip(0.06 + 0.002 * df.debt_to_income + rng.normal(0, 0.02, n), 0.03, 0.30).round(4)
    df["interest_rate"] = rate
    r = rate / 12
    df["monthly_installment"] = (df.loan_amount * r / (1 - (1 + r) ** (-df.term_months))).round(2)
    df["credit_history_years"] = rng.gamma(3.0, 4.0, n).round(1)
    df["open_accounts"] = rng.poisson(7, n)
    df["revolving_balance"] = (df.revolving_utilization * np.exp(rng.normal(np.log(9_000), 0.7, n))).round(0)
    since = rng.integers(1, 120, n).astype("float64")
    since[df.delinquencies_2y.to_numpy() == 0] = np.nan
    df["months_since_last_delinq"] = since
    df["region"] = rng.choice(REGIONS, n)
    df["channel"] = rng.choice(CHANNELS, n, p=[0.45, 0.2, 0.15, 0.2])
    df["verification_status"] = rng.choice(VERIFICATION, n)
    df["score"] = bench_score(df)
    return df.drop(columns=["application_id"])


def bench_score(df: pd.DataFrame) -> np.ndarray:
    """The benchmark's "model": a fixed logistic risk score of four features."""
    logit = (
        -2.9
        + 0.05 * (df.debt_to_income - 18)
        + 2.5 * (df.revolving_utilization.fillna(0.4) - 0.4)
        + 0.5 * df.delinquencies_2y
        - 0.4 * np.log(df.annual_income / 62_000)
    )
    return (1 / (1 + np.exp(-logit))).round(6).to_numpy()


def wide_spec() -> DatasetSpec:
    """The 20 features: the credit spec's 10 plus the 10 added by ``wide_applications``."""
    base = credit_spec(MODEL)
    extra = (
        ColumnSpec("loan_to_income", "numeric"),
        ColumnSpec("interest_rate", "numeric"),
        ColumnSpec("monthly_installment", "numeric"),
        ColumnSpec("credit_history_years", "numeric"),
        ColumnSpec("open_accounts", "numeric"),
        ColumnSpec("revolving_balance", "numeric", max_null_fraction=0.1),
        ColumnSpec("months_since_last_delinq", "numeric", max_null_fraction=1.0),
        ColumnSpec("region", "categorical", values=REGIONS),
        ColumnSpec("channel", "categorical", values=CHANNELS),
        ColumnSpec("verification_status", "categorical", values=VERIFICATION),
    )
    return DatasetSpec(base.name, base.target, base.positive_label, (*base.columns, *extra), id_column=None)


# --- Postgres ---------------------------------------------------------------------------------


def _admin():  # noqa: ANN202
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(ADMIN_URL)
    conn = psycopg2.connect(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres",
                            password=u.password, dbname=u.database or "postgres")
    conn.autocommit = True
    return conn


def create_database() -> tuple[str, str]:
    from sqlalchemy.engine import make_url

    name = f"ll_bench_drift_{secrets.token_hex(4)}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg2", database=name)
    return name, url.render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


def fill_prediction_log(url: str, current: pd.DataFrame, features: list[str], now: pd.Timestamp) -> float:
    """COPY one prediction per row into ``predictions`` (inputs as serving writes them); returns seconds."""
    from ledgerline import db

    t0 = time.perf_counter()
    engine = db.engine_for(url)
    n = len(current)
    rng = np.random.default_rng(7)
    created = now - pd.to_timedelta(rng.uniform(60, 6.9 * 86_400, n), unit="s")
    inputs = current[features].to_json(orient="records", lines=True).splitlines()
    chunk = 200_000
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                part = pd.DataFrame({
                    "prediction_id": [str(uuid.uuid4()) for _ in range(lo, hi)],
                    "model_name": MODEL,
                    "model_version": "1",
                    "created_at": created[lo:hi].astype(str),
                    "inputs": inputs[lo:hi],
                    "outputs": "{}",
                    "score": current["score"].to_numpy()[lo:hi],
                    "latency_ms": 2.0,
                })
                buf = io.StringIO()
                part.to_csv(buf, index=False, header=False)
                buf.seek(0)
                cur.copy_expert(
                    "COPY predictions (prediction_id, model_name, model_version, created_at, inputs, outputs, score, "
                    "latency_ms) FROM STDIN WITH (FORMAT csv)",
                    buf,
                )
            cur.execute("ANALYZE predictions")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - t0


# --- runs ----------------------------------------------------------------------------------------


def run_job_path(url: str, snapshot: Path, spec: DatasetSpec, now: pd.Timestamp, sample_size: int | None,
                 data_dir: Path):  # noqa: ANN201
    from ledgerline.settings import Settings
    from monitoring.data import SCORE_COLUMN, Champion, load_prediction_window, load_reference
    from monitoring.drift import compute_drift
    from monitoring.settings import MonitoringSettings

    mon = MonitoringSettings(evidently_sample_size=sample_size)
    settings = Settings(app_db_url=url, data_dir=data_dir, home=data_dir)
    champion = Champion(MODEL, "1", "bench-run", str(snapshot), spec, None)
    t0 = time.perf_counter()
    end = now.to_pydatetime()
    current = load_prediction_window(url, MODEL, "1", end - pd.Timedelta(days=mon.window_days), end,
                                     numeric=spec.numeric, categorical=spec.categorical)
    t1 = time.perf_counter()
    reference, reference_scores = load_reference(settings, champion, scorer=bench_score)
    t2 = time.perf_counter()
    result = compute_drift(reference, current, numeric=spec.numeric, categorical=spec.categorical,
                           mon=mon, reference_scores=reference_scores, current_scores=current[SCORE_COLUMN].to_numpy())
    t3 = time.perf_counter()
    timings = {"load_current_pg": t1 - t0, "load_reference": t2 - t1, **result.timings, "job_total": t3 - t0}
    return result, timings, current, reference.assign(score=reference_scores)


def direct_evidently(reference: pd.DataFrame, current: pd.DataFrame, spec: DatasetSpec) -> tuple[float, dict[str, float], float]:
    """Evidently's DataDriftPreset on the full frames (same 21 columns as the job): seconds, scores, share."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=[*spec.numeric, "score"], categorical_columns=spec.categorical)
    cols = [*spec.numeric, "score", *spec.categorical]
    t0 = time.perf_counter()
    snap = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current[cols], data_definition=definition),
        Dataset.from_pandas(reference[cols], data_definition=definition),
    )
    seconds = time.perf_counter() - t0
    scores: dict[str, float] = {}
    share = float("nan")
    for m in snap.dict()["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith(":ValueDrift"):
            scores[cfg["column"]] = float(m["value"])
        elif cfg["type"].endswith(":DriftedColumnsCount"):
            share = float(m["value"]["share"])
    return seconds, scores, share


def sampling_error(reference: pd.DataFrame, current: pd.DataFrame, spec: DatasetSpec, full: dict[str, float],
                   sample_size: int, seeds: list[int]) -> pd.DataFrame:
    """Evidently's per-column drift score on samples vs on all rows."""
    from monitoring.evidently_adapter import data_drift

    cur = current.rename(columns={"__score__": "score"})
    rows = []
    for seed in seeds:
        res = data_drift(reference, cur, numerical=[*spec.numeric, "score"], categorical=spec.categorical,
                         sample_size=sample_size, seed=seed, render_html=False)
        for col, d in res.columns.items():
            rows.append({"seed": seed, "column": col, "sample": d.score, "full": full[col], "threshold": d.threshold,
                         "verdict_agrees": d.drifted == (full[col] >= d.threshold)})
    out = pd.DataFrame(rows)
    out["abs_err"] = (out["sample"] - out["full"]).abs()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000, help="current window rows (default 100000)")
    p.add_argument("--reference-rows", type=int, help="reference rows (default: --rows)")
    p.add_argument("--sample-size", type=int, default=20_000, help="rows per side given to Evidently by the job")
    p.add_argument("--error-seeds", type=int, default=3, help="sample seeds for the sampling-error estimate (0: skip)")
    p.add_argument("--skip-direct", action="store_true", help="skip the direct Evidently run (slow at 1M rows)")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import warnings

    warnings.filterwarnings("ignore")
    ref_rows = args.reference_rows or args.rows
    spec = wide_spec()
    features = spec.feature_names
    print(f"frames: reference {ref_rows:,} rows, window {args.rows:,} rows, {len(features)} features "
          f"({len(spec.numeric)} numeric, {len(spec.categorical)} categorical) + score; cores={os.cpu_count()}")
    reference_raw = wide_applications(ref_rows, 1)
    current_raw = wide_applications(args.rows, 2, income_shift=1.3, utilization_shift=0.1)
    import evidently  # noqa: F401  # import cost is not part of either timing

    name, url = create_database()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            snapshot = Path(tmp) / "data.parquet"
            reference_raw.to_parquet(snapshot, index=False)
            now = pd.Timestamp.now(tz="UTC").floor("s")
            fill_s = fill_prediction_log(url, current_raw, features, now)
            print(f"setup: filled {args.rows:,} predictions into {name} in {fill_s:.1f}s (not timed)")

            cold = run_job_path(url, snapshot, spec, now, args.sample_size, Path(tmp))  # conform, score, cache
            result, timings, current, reference = run_job_path(url, snapshot, spec, now, args.sample_size, Path(tmp))
            assert len(current) == args.rows, f"window returned {len(current)} rows, expected {args.rows}"
            evidently_s, full_scores, full_share = (float("nan"), {}, float("nan"))
            if not args.skip_direct:
                evidently_s, full_scores, full_share = direct_evidently(reference, current.rename(columns={"__score__": "score"}), spec)

        print()
        print(f"{'stage (seconds)':<30}{'cold':>8}{'warm':>8}")
        for k in timings:
            print(f"  job: {k:<24}{cold[1].get(k, float('nan')):>8.2f}{timings[k]:>8.2f}")
        print(f"  direct Evidently preset       {evidently_s:>8.2f}   (all {args.rows:,} x {ref_rows:,} rows)")
        print("  (cold: first run for a champion conforms + scores the snapshot and caches it; warm: later runs)")
        print()
        score_psi = f"{result.score.psi:.3f}" if result.score else "-"
        print(f"job verdict: {result.status}; drifted by PSI: {result.drifted_features}; score PSI {score_psi}")
        if result.evidently is not None:
            ev = result.evidently
            print(f"Evidently on the sample ({ev.reference_rows:,}/{ev.current_rows:,} rows): drifted share "
                  f"{ev.drifted_share:.3f} {ev.drifted_columns}; on all rows: share {full_share:.3f}")
        if full_scores and args.error_seeds > 0 and result.evidently is not None and result.evidently.sampled:
            err = sampling_error(reference, current, spec, full_scores, args.sample_size,
                                 [42 + i for i in range(args.error_seeds)])
            print(f"sampling error of Evidently's per-column drift score ({args.error_seeds} seeds x "
                  f"{err.column.nunique()} columns, sample {args.sample_size:,}/side): "
                  f"mean abs {err.abs_err.mean():.4f}, max abs {err.abs_err.max():.4f} "
                  f"(worst: {err.loc[err.abs_err.idxmax(), 'column']}); "
                  f"verdicts agree {err.verdict_agrees.mean():.1%}")
            print("PSI error: 0 (PSI uses every row)")
        job_s = cold[1]["job_total"]  # the slower, first run for a champion
        print(f"job_s={job_s:.2f} evidently_s={evidently_s:.2f} ratio={job_s / evidently_s:.2f}")
    finally:
        from ledgerline import db

        db.engine_for(url).dispose()
        drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
