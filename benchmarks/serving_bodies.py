"""Request bodies of the serving benchmark (``benchmarks/bench_serving.py``), per family: one file per request
size (1, 100 and 1,000 records) for ours and one for ``mlflow models serve`` (``dataframe_records``), one
body per line, the same records for both wherever both take them."""

from __future__ import annotations

import json
from pathlib import Path

from serving_harness import BATCH, BATCHES

ANOMALY = "bench-anomaly"
FORECAST = "bench-forecast"
ASSET = "bench-asset"
FORECAST_SERIES = 1000  # monthly series of the forecast model: a 1,000-series request names each once
STREAM_ROWS = 120_000  # the anomaly stream: about 2,000 customers over 90 days


def write_bodies(path: Path, bodies: list[object]) -> Path:
    path.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))
    return path


def credit_bodies(tmp: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """One body per size for ours and for MLflow (the same records)."""
    from families.credit_risk.data import credit_spec, generate_loan_applications
    from features.spec import conform

    spec = credit_spec()
    frame = conform(generate_loan_applications(BATCH, 11), spec)[spec.feature_names]
    records = json.loads(frame.to_json(orient="records"))
    ours: dict[int, Path] = {}
    theirs: dict[int, Path] = {}
    for n in (1, *BATCHES):
        ours[n] = write_bodies(tmp / f"credit-ours-{n}.jsonl", [records[0] if n == 1 else records[:n]])
        theirs[n] = write_bodies(tmp / f"credit-mlflow-{n}.jsonl", [{"dataframe_records": records[:n]}])
    return ours, theirs


def anomaly_bodies(tmp: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """A transaction stream in time order, a third for each request size (single, 100, 1,000 rows); ours
    gets the raw transactions, MLflow the behavioural feature vectors of the same stream (computed offline
    with the same functions, what MLflow's logged signature takes)."""
    from families.transaction_anomaly.behaviour import FEATURE_NAMES, compute_offline
    from families.transaction_anomaly.data import generate_transactions

    df = generate_transactions(STREAM_ROWS, seed=21)
    feats = compute_offline(df)[list(FEATURE_NAMES)]
    raw = df.drop(columns=["is_fraud", "fraud_pattern"]).assign(timestamp=df["timestamp"].map(lambda t: t.isoformat()))
    raw_records = json.loads(raw.to_json(orient="records"))
    feat_records = json.loads(feats.to_json(orient="records"))
    third = len(df) // 3
    ours: dict[int, Path] = {}
    theirs: dict[int, Path] = {}
    for k, n in enumerate((1, *BATCHES)):
        lo, hi = k * third, (k + 1) * third
        chunks = [(raw_records[i:i + n], feat_records[i:i + n]) for i in range(lo, hi - n + 1, n)]
        ours[n] = write_bodies(tmp / f"anomaly-ours-{n}.jsonl", [c[0][0] if n == 1 else c[0] for c in chunks])
        theirs[n] = write_bodies(tmp / f"anomaly-mlflow-{n}.jsonl", [{"dataframe_records": c[1]} for c in chunks])
    return ours, theirs


def category_bodies(tmp: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """Generated statement lines (merchants the model may or may not know), the same records for both;
    ours answers with the top 3, the driving n-grams and correction rules (none here), and logs it."""
    from families.transaction_category.data import generate_statement_lines

    df = generate_statement_lines(BATCH, seed=31)[["transaction_id", "description", "amount", "currency", "country"]]
    ours_records = json.loads(df.to_json(orient="records"))  # ours also takes the line's id (into the log)
    records = json.loads(df.drop(columns=["transaction_id"]).to_json(orient="records"))  # the model signature's columns
    ours: dict[int, Path] = {}
    theirs: dict[int, Path] = {}
    for n in (1, *BATCHES):
        ours[n] = write_bodies(tmp / f"category-ours-{n}.jsonl", ours_records[:200] if n == 1 else [ours_records[:n]])
        theirs[n] = write_bodies(tmp / f"category-mlflow-{n}.jsonl",
                                 [{"dataframe_records": [r]} for r in records[:200]] if n == 1 else [{"dataframe_records": records[:n]}])
    return ours, theirs


def forecast_bodies(tmp: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """The registered forecast model's series in a shuffled order, the full horizon, intervals 0.8 and 0.95
    in turn; the same rows for both. Ours: one series per request on ``/forecast``, 100 and 1,000 series per
    request on ``/predict``; MLflow: the same rows as ``dataframe_records`` (its pyfunc answers every row's
    series with its points and bounds, as ours does)."""
    import random

    from families.spending_forecast.model import load_forecast_model

    fm = load_forecast_model(f"models:/{FORECAST}@champion")
    ids = fm.series_ids
    random.Random(41).shuffle(ids)
    records = [{"series_id": sid, "horizon": fm.horizon, "interval": (0.8, 0.95)[i % 2]} for i, sid in enumerate(ids)]
    ours: dict[int, Path] = {}
    theirs: dict[int, Path] = {}
    for n in (1, *BATCHES):
        chunks = [records[i:i + n] for i in range(0, len(records) - n + 1, n)]
        ours[n] = write_bodies(tmp / f"forecast-ours-{n}.jsonl", [c[0] if n == 1 else c for c in chunks])
        theirs[n] = write_bodies(tmp / f"forecast-mlflow-{n}.jsonl", [{"dataframe_records": c} for c in chunks])
    return ours, theirs


def asset_bodies(tmp: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """Generated sales (empty cells included) valued at an 80 % interval, the same records for both: every input
    column and ``interval`` (ours answers with the interval and the top 3 reasons and logs it; MLflow's pyfunc,
    ``families.asset_valuation.pyfunc``, answers the value and the interval)."""
    from families.asset_valuation.data import generate

    df = generate(BATCH, seed=51).drop(columns=["asset_id", "price"]).assign(interval=0.8)
    records = json.loads(df.to_json(orient="records"))
    ours: dict[int, Path] = {}
    theirs: dict[int, Path] = {}
    for n in (1, *BATCHES):
        ours[n] = write_bodies(tmp / f"asset-ours-{n}.jsonl", records[:200] if n == 1 else [records[:n]])
        theirs[n] = write_bodies(tmp / f"asset-mlflow-{n}.jsonl",
                                 [{"dataframe_records": [r]} for r in records[:200]] if n == 1
                                 else [{"dataframe_records": records[:n]}])
    return ours, theirs


MAKERS = {"credit-risk": credit_bodies, "transaction-anomaly": anomaly_bodies, "transaction-category": category_bodies,
          "spending-forecast": forecast_bodies, "asset-valuation": asset_bodies}
