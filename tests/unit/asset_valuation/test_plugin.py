"""The asset-valuation plug-ins without services: the three protocols, spec inference on a messy user table
(ISO dates, empty cells, empty targets), the train options as spec roles, the gate's rules, the serving
answers (intervals per record, reasons, flatten, offline scoring at another level), the monitor's live
metrics on synthetic answers and realised values, the family's expectations, and the pyfunc round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from families.asset_valuation.data import TARGET, TIME, generate
from families.asset_valuation.model import AssetValuationModel
from families.asset_valuation.train import FAMILY as TRAIN
from families.asset_valuation.train import coverage_z, input_example
from features.labels import LABEL_COLUMN, NumericCodec
from features.spec import PartialSpec
from ledgerline.errors import DataError, LedgerlineError
from ledgerline.families import FAMILIES
from ledgerline.settings import Settings
from training.gate import decide

NAME = "asset-valuation"
FAST = {"learning_rate": 0.3, "n_estimators": 80, "min_segment_rows": 100_000}


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, object]:
    spec = TRAIN.default_spec("av-test")
    frame = TRAIN.conform(generate(1500, seed=5), spec)
    train_df, test_df = TRAIN.split(frame, spec, 42)
    return train_df, test_df, spec


@pytest.fixture(scope="module")
def model(data: tuple[pd.DataFrame, pd.DataFrame, object]) -> AssetValuationModel:
    train_df, _, spec = data
    return TRAIN.train(train_df, spec, TRAIN.params(42, FAST))  # type: ignore[arg-type]


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _ctx(spec: object, **options: object):  # noqa: ANN202
    from serving.family import ServingContext
    from serving.settings import ServingSettings

    settings = ServingSettings(api_keys=["k" * 24], admin_key="a" * 24)  # type: ignore[call-arg]
    return ServingContext("av-test", "1", settings, spec, [], Path("."), options=dict(options))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- protocols and registry


def test_the_family_is_registered_and_implements_every_layer() -> None:
    from monitoring.family import MonitoringFamily, get_monitoring_family
    from serving.family import ServingFamily, get_serving_family
    from training.family import TrainingFamily, get_family

    assert FAMILIES[NAME] == "asset_valuation"
    assert isinstance(get_family(NAME), TrainingFamily) and get_family(NAME).target_kind == "numeric"
    assert isinstance(get_serving_family(NAME), ServingFamily)
    assert isinstance(get_monitoring_family(NAME), MonitoringFamily)
    assert get_serving_family(NAME).score_range is None and get_serving_family(NAME).score_column is None


def test_the_default_spec_has_a_numeric_target_and_the_time_and_segment_roles() -> None:
    spec = TRAIN.default_spec("x")
    assert spec.target == TARGET and spec.target_kind == "numeric" and isinstance(spec.label_codec, NumericCodec)
    assert spec.roles == {"time": TIME, "segment": "asset_type"} and spec.datetime == [TIME]


# --------------------------------------------------------------------------- data contract


def messy() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({
        "listing_id": [f"L{i:05d}" for i in range(n)],
        "sold": [f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}" if i % 3 else f"2023-{1 + i % 12:02d}-15T10:30:00" for i in range(n)],
        "kind": rng.choice(["flat", "house"], n),
        "zone": rng.choice([10, 20, 30], n),  # numeric codes of a segment: categorical by its role
        "area": rng.uniform(30, 200, n).round(1),
        "value": rng.uniform(1e5, 5e5, n).round(-2).astype(object),
    })
    frame.loc[[3, 50], "sold"] = None
    frame.loc[[7], "sold"] = "  "
    frame.loc[[5, 9], "area"] = np.nan
    frame.loc[[11, 12], "value"] = None
    frame.loc[[13], "value"] = " "
    return frame


def test_spec_inference_on_a_messy_table_types_the_time_and_segment_columns_and_skips_empty_targets() -> None:
    raw = messy()
    spec = TRAIN.infer_spec(raw, target="value", positive_label=None,
                            partial=PartialSpec(roles={"time": "sold", "segment": "zone"}), name="homes")
    assert spec.target == "value" and spec.target_kind == "numeric" and spec.id_column == "listing_id"
    assert spec.column("sold").kind == "datetime" and spec.column("zone").kind == "categorical"
    assert spec.column("area").kind == "numeric" and spec.column("area").max_null_fraction > 0
    frame = TRAIN.conform(raw, spec)
    assert len(frame) == len(raw) - 3, "rows with an empty target are dropped"
    assert frame[LABEL_COLUMN].dtype == np.float64 and frame["sold"].isna().sum() == 3
    train_df, test_df = TRAIN.split(frame, spec, 1)
    assert train_df["sold"].max() <= test_df["sold"].dropna().min()


def test_spec_inference_names_what_to_fix() -> None:
    raw = messy()
    with pytest.raises(DataError, match="--time-column 'when'"):
        TRAIN.infer_spec(raw, target="value", positive_label=None, partial=PartialSpec(roles={"time": "when"}), name="x")
    with pytest.raises(DataError, match="not in the data"):
        TRAIN.infer_spec(raw, target="price", positive_label=None, partial=PartialSpec(), name="x")
    junk = raw.assign(value=raw["value"].where(raw.index != 20, "call us"))
    with pytest.raises(DataError, match="call us"):
        TRAIN.infer_spec(junk, target="value", positive_label=None, partial=PartialSpec(), name="x")


def test_the_train_options_become_spec_roles_and_a_positive_label_is_refused() -> None:
    from training.requests import train_request

    req = train_request(NAME, model_name="homes", data="homes.csv", target="value",
                        options={"time_column": "sold", "segment_column": "kind"})
    assert req.roles == {"time": "sold", "segment": "kind"}
    with pytest.raises(LedgerlineError, match="without --positive-label"):
        train_request(NAME, data="homes.csv", target="value", positive_label="1")
    with pytest.raises(LedgerlineError, match="--text-column is not an option of asset-valuation"):
        train_request(NAME, data="homes.csv", target="value", options={"text_column": "memo"})


# --------------------------------------------------------------------------- metrics and gate


def test_evaluate_adds_the_naive_baseline_and_the_coverage_z(model: AssetValuationModel, data) -> None:  # noqa: ANN001
    _, test_df, spec = data
    m = TRAIN.evaluate(model, test_df, spec)
    for key in (*TRAIN.headline_metrics, "naive_mdape", "mdape_ratio_vs_naive", "coverage_z"):
        assert np.isfinite(m[key]), key
    assert m["mdape_ratio_vs_naive"] < 0.75, "a first model on real-looking data is promotable"
    assert m["coverage_nominal"] == pytest.approx(0.8)
    assert coverage_z(0.8, 0.8, 300, 300) == 0.0
    assert coverage_z(0.7, 0.8, 300, 300) == pytest.approx(-0.1 / np.sqrt(0.16 * 2 / 300))


def test_the_gate_checks_the_baseline_ceiling_the_coverage_band_and_the_champion() -> None:
    from training.family import gate_policy

    policy = gate_policy(TRAIN, Settings(), "homes")
    good = {"mdape_ratio_vs_naive": 0.4, "coverage_z": -1.0, "mdape": 0.10, "interval_width": 0.40}
    assert decide(good, policy).passed
    assert not decide({**good, "mdape_ratio_vs_naive": 0.9}, policy).passed
    assert not decide({**good, "coverage_z": -3.5}, policy).passed
    assert not decide({**good, "coverage_z": 4.0}, policy).passed, "far too wide intervals fail too"
    champion = {**good, "mdape": 0.08}
    assert not decide(good, policy, champion=champion, champion_version="1").passed
    assert decide(good, policy, champion={**good, "mdape": 0.095}, champion_version="1").passed
    assert not decide(good, policy, champion={**good, "interval_width": 0.30}, champion_version="1").passed
    strict = Settings(families={NAME: {"gate": {"max_mdape_ratio_vs_naive": 0.3}}})  # type: ignore[call-arg]
    assert not decide(good, gate_policy(TRAIN, strict, "homes")).passed


def test_report_and_card(model: AssetValuationModel, data) -> None:  # noqa: ANN001
    _, test_df, spec = data
    metrics = TRAIN.evaluate(model, test_df, spec)
    report = TRAIN.report(model, test_df, spec, metrics)
    assert all(k.startswith("plots/") for k in report.figures) and report.figures
    assert report.params["chosen_candidate"] == model.info["chosen"]
    assert set(report.documents["evaluation/segment_metrics.json"]) == set(model.segments(test_df))
    parts = TRAIN.card_parts(model, test_df, spec, Settings())
    low, point, high = parts.metrics["mdape"][1], parts.metrics["mdape"][0], parts.metrics["mdape"][2]
    assert low <= point <= high
    assert any("market break" in text for text in parts.limitations)
    assert "Holdout metrics per segment" in parts.sections


# --------------------------------------------------------------------------- serving


def test_serving_answers_with_an_interval_per_record_and_reasons_in_target_units(model, data) -> None:  # noqa: ANN001
    from serving.errors import InvalidRecords
    from serving.family import get_serving_family

    _, test_df, spec = data
    serving = get_serving_family(NAME)
    built = serving.build(model, _ctx(spec))
    records = _records(input_example(model, test_df, 20).drop(columns=["interval"]))
    answers, scores = built.predictor([{**r, "interval": None} for r in records])
    pred, lower, upper = model.predict_interval(test_df.head(20))
    np.testing.assert_allclose(scores, pred, rtol=1e-5)  # with reasons: the sum of the TreeSHAP table's contributions
    np.testing.assert_allclose([a["prediction_lower"] for a in answers], lower, rtol=1e-5)
    plain, plain_scores = built.predictor([{**r, "interval": None} for r in records], explain=False)
    np.testing.assert_allclose(plain_scores, pred, rtol=1e-9)
    first = answers[0]
    assert first["interval"] == 0.8 and len(first["reasons"]) == 3
    contrib, base = model.contributions(test_df.head(1))
    top = contrib.iloc[0].abs().idxmax()
    assert first["reasons"][0]["feature"] == top
    assert first["reasons"][0]["contribution"] == pytest.approx(contrib.iloc[0][top], rel=1e-3)
    wide, _ = built.predictor([{**records[0], "interval": 0.95}], explain=False)
    assert wide[0]["interval"] == 0.95 and wide[0]["reasons"] == []
    assert wide[0]["prediction_lower"] < first["prediction_lower"] and wide[0]["prediction_upper"] > first["prediction_upper"]
    flat = serving.flatten(first)
    assert list(flat) == list(serving.answer_columns) and flat["interval_level"] == 0.8 and flat["reasons"].startswith("[")
    with pytest.raises(InvalidRecords, match="not a date"):
        built.predictor([{**records[0], TIME: "last tuesday", "interval": None}])
    with pytest.raises(InvalidRecords, match="interval level"):
        built.predictor([{**records[0], "interval": 1.5}])
    serving.answer_model.model_validate({"prediction_id": "p", "model": "m", "version": "1", **first})


def test_offline_scoring_takes_the_interval_option_and_request_columns_add_the_field(model, data) -> None:  # noqa: ANN001
    from serving.family import get_serving_family

    _, test_df, spec = data
    serving = get_serving_family(NAME)
    signature = [{"name": c, "type": "string" if c in (TIME, "asset_type", "city", "condition") else "double"}
                 for c in model.input_columns] + [{"name": "interval", "type": "double", "required": False}]
    columns = serving.request_columns(signature, spec)
    interval = [c for c in columns if c.name == "interval"]
    assert len(interval) == 1 and interval[0].nullable and interval[0].bounds == (0.5, 0.99)
    frame = input_example(model, test_df, 10).assign(interval=None)
    at80 = serving.score_frame(model, frame, _ctx(spec, cache={}))
    at90 = serving.score_frame(model, frame, _ctx(spec, cache={}, interval=0.9, explain=False))
    assert list(at80.columns) == list(serving.answer_columns)
    assert (at90["interval_level"] == 0.9).all() and (at90["prediction_lower"] < at80["prediction_lower"]).all()
    assert (at90["reasons"] == "").all()
    assert serving.label_codec(spec).accept("250000") == "250000.0"


# --------------------------------------------------------------------------- monitoring


def test_live_metrics_from_realised_values_and_served_intervals() -> None:
    from monitoring.family import InsufficientLabels, get_monitoring_family
    from monitoring.settings import MonitoringSettings

    mon = get_monitoring_family(NAME)
    y = np.array([100.0, 200.0, 300.0, 400.0])
    p = np.array([110.0, 190.0, 330.0, 400.0])
    outputs = [{"prediction": v, "prediction_lower": v * 0.95, "prediction_upper": v * 1.05} for v in p]
    m = mon.live_metrics(y, p, outputs)
    assert m["mdape"] == pytest.approx(np.median([0.1, 0.05, 0.1, 0.0]))
    assert m["coverage"] == pytest.approx(0.25)  # only 400 lies in its +-5 % interval
    assert "coverage" not in mon.live_metrics(y, p, None)
    batch = mon.live_metrics(y, np.full(4, np.nan), outputs)  # a batch job logged no score
    assert batch["mdape"] == pytest.approx(m["mdape"])
    with pytest.raises(InsufficientLabels):
        mon.live_metrics(np.zeros(3), np.ones(3), None)
    rules = {r.metric: r for r in mon.performance_rules(MonitoringSettings())}
    assert rules["mdape"].direction == "lower" and rules["coverage"].direction == "higher"
    assert mon.monitored_columns(TRAIN.default_spec("x"))[0] and TIME not in sum(mon.monitored_columns(TRAIN.default_spec("x")), [])


# --------------------------------------------------------------------------- expectations and the logged model


def test_the_family_expectations_pass_generated_data_and_catch_implausible_dates() -> None:
    from expectations.suite import validate

    spec = TRAIN.default_spec("av-suite")
    frame = TRAIN.conform(generate(400, seed=2), spec)
    assert validate(frame, spec, extra=TRAIN.expectations()).success
    bad = frame.copy()
    bad.loc[:5, TIME] = pd.Timestamp("1850-01-01", tz="UTC")
    report = validate(bad, spec, extra=TRAIN.expectations())
    assert not report.success and any(f"{TIME}__year" in str(f) for f in report.failures)


def test_the_pyfunc_answers_values_and_intervals_and_loads_back(model, data, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import mlflow
    import mlflow.tracking.fluent

    _, test_df, spec = data
    # an experiment of this test's own store: another test may have left an active experiment of its server
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        mlflow.set_experiment("asset-pyfunc")
        with mlflow.start_run():
            uri = TRAIN.log_model(model, test_df, spec)
        loaded = mlflow.pyfunc.load_model(uri)
        example = input_example(model, test_df, 4).assign(interval=[None, 0.9, None, None])
        out = loaded.predict(example)
        assert list(out.columns) == ["prediction", "prediction_lower", "prediction_upper"]
        pred, lower, _ = model.predict_interval(test_df.head(4))
        np.testing.assert_allclose(out["prediction"], pred, rtol=1e-9)
        assert out["prediction_lower"].iloc[0] == pytest.approx(lower[0]) and out["prediction_lower"].iloc[1] < lower[1]
        back = TRAIN.load_model(uri)
        np.testing.assert_allclose(back.predict(test_df.head(4)), pred, rtol=1e-12)
    finally:
        mlflow.set_tracking_uri("")


def test_dates_centuries_away_are_refused_not_extrapolated(model, data) -> None:  # noqa: ANN001
    from serving.errors import InvalidRecords
    from serving.family import get_serving_family

    _, test_df, spec = data
    built = get_serving_family(NAME).build(model, _ctx(spec))
    record = {**_records(input_example(model, test_df, 1))[0], "interval": None}
    answers, scores = built.predictor([{**record, TIME: "2099-06-30"}, {**record, TIME: None}])
    assert np.isfinite(scores).all()
    with pytest.raises(InvalidRecords, match="outside 1900-2100"):
        built.predictor([{**record, TIME: "9999-12-31"}])
