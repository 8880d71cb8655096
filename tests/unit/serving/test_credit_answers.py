"""The pure credit-risk answer path on a tiny model trained in the test: scores, decisions,
reason codes, and the TreeSHAP table against XGBoost's own pred_contribs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from families.credit_risk import answers as credit
from families.credit_risk.data import credit_spec, generate_loan_applications
from families.credit_risk.fit import CreditParams, train
from features.spec import LABEL_COLUMN, conform
from serving.treeshap import LeafShapTable, TreeShapTable

SPEC = credit_spec()
NULLABLE = frozenset(c.name for c in SPEC.columns if c.max_null_fraction > 0)


@pytest.fixture(scope="module")
def pipeline() -> Any:
    df = conform(generate_loan_applications(2500, seed=3), SPEC)
    params = CreditParams(n_estimators=80, early_stopping_rounds=15, seed=3)
    return train(df[SPEC.feature_names], df[LABEL_COLUMN].to_numpy(), SPEC, params)


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    df = conform(generate_loan_applications(300, seed=11), SPEC)[SPEC.feature_names]
    out = []
    for rec in df.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()})
    return out


def _pred_contribs(pipeline: Any, X: np.ndarray) -> np.ndarray:
    booster = pipeline.named_steps["model"].get_booster()
    raw = booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)
    return pipeline.named_steps["features"].aggregate_contributions(np.asarray(raw))


def test_served_probabilities_equal_the_pipelines_predict_proba(pipeline: Any, records: list[dict[str, Any]]) -> None:
    import pandas as pd

    scorer = credit.scorer_from_pipeline(pipeline, threshold=0.5, nullable=NULLABLE)
    assert scorer.shap_table is not None and scorer.shap_table.margins_ok
    served = credit.score(records, scorer).probabilities
    expected = pipeline.predict_proba(pd.DataFrame(records, columns=SPEC.feature_names))[:, 1]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)
    plain = credit.scorer_from_pipeline(pipeline, threshold=0.5, shap_table=False)
    np.testing.assert_allclose(credit.score(records, plain).probabilities, expected, rtol=0, atol=1e-6)


def test_treeshap_table_matches_pred_contribs_at_thresholds_and_missing_values(pipeline: Any) -> None:
    features = pipeline.named_steps["features"]
    booster = pipeline.named_steps["model"].get_booster()
    n_out = len(features.feature_names_out_)
    nullable = [i < len(features.numeric) for i in range(n_out)]
    table = TreeShapTable.build(booster, n_out, features.aggregate_contributions, nullable)
    assert table is not None
    rng = np.random.default_rng(0)
    X = np.zeros((500, n_out), dtype=np.float32)
    for f in range(n_out):
        t = table.thresholds[f]
        if len(t):  # exactly on, just below and just above every threshold, plus missing values
            X[:, f] = rng.choice(np.concatenate([t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)]), 500)
        if nullable[f]:
            X[rng.random(500) < 0.15, f] = np.nan
    got, margins, unsupported = table.lookup(X)
    assert unsupported is None
    np.testing.assert_allclose(got, _pred_contribs(pipeline, X), atol=1e-4)
    want_margin = booster.predict(xgb.DMatrix(X, missing=np.nan), output_margin=True)
    np.testing.assert_allclose(margins, want_margin, atol=1e-4)


@pytest.mark.parametrize("depth", [3, 5, 6])
def test_reason_codes_of_deeper_models_equal_pred_contribs_and_stay_on_the_fast_path(
    depth: int, records: list[dict[str, Any]]
) -> None:
    df = conform(generate_loan_applications(3000, seed=5), SPEC)
    params = CreditParams(n_estimators=60, max_depth=depth, early_stopping_rounds=60, seed=5)
    deep = train(df[SPEC.feature_names], df[LABEL_COLUMN].to_numpy(), SPEC, params)
    scorer = credit.scorer_from_pipeline(deep, threshold=0.5, nullable=NULLABLE)
    # the fast path is used (no fall back to pred_contribs per request), whatever the depth
    assert scorer.shap_table is not None and scorer.shap_table.margins_ok
    # and the per-leaf tables (what deep models use when the cell table is too large) are exact too
    leaves = LeafShapTable.build(deep.named_steps["model"].get_booster(), len(scorer.features.feature_names_out_),
                                 scorer.features.aggregate_contributions)
    assert leaves is not None and leaves.max_path_features >= min(depth, 3)
    X = scorer.features.transform_records(records)
    for rows in (records[:1], records[:100], records):
        got = credit.score(rows, scorer)
        Xr = X[: len(rows)]
        np.testing.assert_allclose(got.contributions, _pred_contribs(deep, Xr), atol=1e-5)
        np.testing.assert_allclose(got.probabilities, scorer.booster.inplace_predict(Xr), atol=1e-6)
        leaf_contribs, leaf_margin, _ = leaves.lookup(Xr)
        np.testing.assert_allclose(leaf_contribs, _pred_contribs(deep, Xr), atol=1e-5)
        np.testing.assert_allclose(leaf_margin, scorer.booster.predict(xgb.DMatrix(Xr), output_margin=True), atol=1e-4)


def test_a_model_too_large_for_the_tables_falls_back_to_pred_contribs_with_a_warning(
    pipeline: Any, records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from serving.treeshap import cells, leaves

    monkeypatch.setattr(leaves, "MAX_TABLE_VALUES", 10)
    monkeypatch.setattr(cells, "MAX_CELLS", 10)
    with caplog.at_level("WARNING", logger="serving.treeshap"):
        scorer = credit.scorer_from_pipeline(pipeline, threshold=0.5, nullable=NULLABLE)
    assert scorer.shap_table is None
    assert "pred_contribs" in caplog.text
    got = credit.score(records[:30], scorer).contributions
    np.testing.assert_allclose(got, _pred_contribs(pipeline, scorer.features.transform_records(records[:30])), atol=1e-6)


def test_a_missing_value_outside_the_training_nulls_follows_the_default_branch_as_in_xgboost(pipeline: Any, records: list[dict[str, Any]]) -> None:
    scorer = credit.scorer_from_pipeline(pipeline, threshold=0.5, nullable=frozenset())  # no field declared nullable
    recs = [dict(r) for r in records[:20]]
    recs[3]["annual_income"] = None
    got = credit.score(recs, scorer)
    X = scorer.features.transform_records(recs)
    np.testing.assert_allclose(got.contributions, _pred_contribs(pipeline, X), atol=1e-4)
    np.testing.assert_allclose(got.probabilities, scorer.booster.inplace_predict(X), atol=1e-5)


def test_reason_codes_are_the_fields_that_pushed_the_risk_up_most(pipeline: Any, records: list[dict[str, Any]]) -> None:
    scorer = credit.scorer_from_pipeline(pipeline, threshold=0.5, reason_codes=3, nullable=NULLABLE)
    answers, scores = credit.predict(records, scorer)
    contribs = _pred_contribs(pipeline, scorer.features.transform_records(records))
    names = scorer.input_names
    for rec, ans, row in zip(records, answers, contribs, strict=True):
        got = [r["feature"] for r in ans["reason_codes"]]
        top = np.sort(row)[::-1][:3]
        assert len([v for v in top if v > 1e-4]) <= len(got) <= 3
        # the same contributions XGBoost gives, in the same order (ties may swap names)
        np.testing.assert_allclose([row[names.index(f)] for f in got], top[: len(got)], atol=1e-4)
        for r in ans["reason_codes"]:
            assert r["contribution"] >= 0
            assert r["value"] == rec[r["feature"]]
        contributions = [r["contribution"] for r in ans["reason_codes"]]
        assert contributions == sorted(contributions, reverse=True)


def test_decision_follows_the_threshold(pipeline: Any, records: list[dict[str, Any]]) -> None:
    low = credit.scorer_from_pipeline(pipeline, threshold=0.05, reason_codes=0, nullable=NULLABLE)
    answers, scores = credit.predict(records, low)
    for ans, p in zip(answers, scores, strict=True):
        assert ans["decision"] == ("decline" if p >= 0.05 else "approve")
        assert ans["threshold"] == 0.05
        assert ans["reason_codes"] == []
    assert {a["decision"] for a in answers} == {"approve", "decline"}


def test_approximate_reason_codes_come_from_xgboosts_approx_contribs(pipeline: Any, records: list[dict[str, Any]]) -> None:
    scorer = credit.scorer_from_pipeline(pipeline, threshold=0.5, approximate=True, nullable=NULLABLE)
    assert scorer.shap_table is None
    got = credit.score(records[:50], scorer).contributions
    X = scorer.features.transform_records(records[:50])
    raw = scorer.booster.predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=True)
    np.testing.assert_allclose(got, scorer.features.aggregate_contributions(raw), atol=1e-6)


def test_a_pipeline_without_the_expected_steps_is_refused() -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(ValueError, match="features"):
        credit.scorer_from_pipeline(Pipeline([("scale", StandardScaler())]), threshold=0.5)


def _cpu_seconds(fn: Any, repeats: int = 5) -> float:
    """The least CPU time of a few runs (CPU, not wall: other processes on a busy machine do not count)."""
    import time

    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def test_reason_codes_of_a_depth_6_model_cost_about_what_depth_4_costs(records: list[dict[str, Any]]) -> None:
    """No cost cliff with depth: deep trees are tabulated in groups of leaves (subtrees) of bounded size,
    so a 1,000-row batch costs one table row per group, not a pass over every leaf and path feature
    (the per-leaf tables, which made depth 6 about 20x slower than depth 4 here)."""
    df = conform(generate_loan_applications(3000, seed=5), SPEC)
    rows = (records * 4)[:1000]
    cost: dict[int, float] = {}
    for depth in (4, 6):
        # full trees (small child weight, no early stop): the depth-6 trees span far too many cells to tabulate whole
        params = CreditParams(n_estimators=30, max_depth=depth, min_child_weight=1.0, early_stopping_rounds=30, seed=5, n_jobs=1)
        model = train(df[SPEC.feature_names], df[LABEL_COLUMN].to_numpy(), SPEC, params)
        scorer = credit.scorer_from_pipeline(model, threshold=0.5, nullable=NULLABLE)
        assert isinstance(scorer.shap_table, TreeShapTable), depth
        X = scorer.features.transform_records(rows)
        np.testing.assert_allclose(credit.score(rows, scorer).contributions, _pred_contribs(model, X), atol=1e-5)
        credit.score(rows, scorer)  # warm
        cost[depth] = _cpu_seconds(lambda: credit.score(rows, scorer))  # noqa: B023
    assert cost[6] <= 2.0 * cost[4], f"depth 6 costs {cost[6] * 1e3:.1f} ms per 1,000 rows, depth 4 {cost[4] * 1e3:.1f} ms"


def test_explain_false_gives_the_same_scores_and_decisions_without_reason_codes(
    pipeline: Any, records: list[dict[str, Any]]
) -> None:
    scorer = credit.scorer_from_pipeline(pipeline, threshold=0.3, nullable=NULLABLE)
    full, full_scores = credit.predict(records, scorer)
    lean, lean_scores = credit.predict(records, scorer, explain=False)
    assert credit.score(records, scorer, explain=False).contributions is None
    np.testing.assert_allclose(lean_scores, full_scores, atol=1e-5)
    assert [a["reason_codes"] for a in lean] == [[]] * len(records)
    assert any(a["reason_codes"] for a in full)
    assert [(a["decision"], a["threshold"]) for a in lean] == [(a["decision"], a["threshold"]) for a in full]


def test_offline_scoring_without_explanations_leaves_the_reason_codes_column_empty(
    pipeline: Any, records: list[dict[str, Any]], tmp_path: Any
) -> None:
    """``ledgerline score --no-explain`` sets ``options["explain"]``; the family's score_frame honours it."""
    import pandas as pd

    from families.credit_risk.serve import FAMILY
    from serving.batch import offline_settings
    from serving.family import ServingContext
    from serving.schema import Column

    columns = [Column(c.name, "numeric" if c.kind == "numeric" else "categorical", c.name in NULLABLE) for c in SPEC.columns
               if c.name in SPEC.feature_names]
    frame = pd.DataFrame(records[:40], columns=SPEC.feature_names)
    scored = {}
    cache: dict[str, Any] = {}  # the predictor (TreeSHAP tables) is built once; explain is per call
    for explain in (True, False):
        ctx = ServingContext("m", "1", offline_settings(), SPEC, columns, tmp_path, options={"cache": cache, "explain": explain})
        scored[explain] = FAMILY.score_frame(pipeline, frame, ctx)
    assert (scored[False]["reason_codes"] == "").all() and (scored[True]["reason_codes"] != "").any()
    np.testing.assert_allclose(scored[False]["probability_of_default"], scored[True]["probability_of_default"], atol=1e-5)


def test_a_scored_frame_has_exactly_the_flattened_api_answers(pipeline: Any) -> None:
    """``ledgerline score`` and batch jobs answer column by column; the text and numbers are the API's
    answers flattened, whatever the cells: ints, floats, missing values, categories the model never saw."""
    import pandas as pd

    from families.credit_risk.serve import FAMILY
    from serving.batch import offline_settings
    from serving.family import ServingContext
    from serving.schema import columns_from, validate_frame

    frame = conform(generate_loan_applications(400, seed=21), SPEC)[SPEC.feature_names].reset_index(drop=True)
    frame["delinquencies_2y"] = frame["delinquencies_2y"].astype("int64")  # an integer column, as a CSV reads it
    frame.loc[::7, "revolving_utilization"] = np.nan
    frame.loc[::5, "employment_length_years"] = np.nan
    frame["purpose"] = frame["purpose"].astype(object)
    frame.loc[3, "purpose"] = 'wedding "big" – café'  # unseen, with quotes and non-ASCII
    frame.loc[4, "home_ownership"] = None
    frame.index = pd.RangeIndex(100, 100 + len(frame))  # a later chunk of a file
    sig = [{"name": c, "type": "string" if frame[c].dtype == object else "double", "required": False}
           for c in SPEC.feature_names]
    ctx = ServingContext("m", "1", offline_settings(), SPEC, columns_from(sig, SPEC), Path("."), options={"cache": {}})

    run = FAMILY.build(pipeline, ctx).predictor

    def api_answers(f: pd.DataFrame) -> pd.DataFrame:
        answers, _ = run(f.astype(object).where(f.notna(), None).to_dict("records"))
        return pd.DataFrame([FAMILY.flatten(a) for a in answers], index=f.index)

    clean, rejected = validate_frame(frame, ctx.columns, SPEC)  # as files are scored: object columns, None for NaN
    assert rejected.index.tolist() == [103, 104]  # the unseen purpose, the missing home ownership
    got = FAMILY.score_frame(pipeline, frame, ctx)
    for f, scored in ((frame, got), (clean, FAMILY.score_frame(pipeline, clean, ctx))):
        expected = api_answers(f)
        assert list(scored.columns) == ["probability_of_default", "decision", "reason_codes"]
        assert scored.index.equals(f.index)
        np.testing.assert_array_equal(scored["probability_of_default"].to_numpy(),
                                      expected["probability_of_default"].to_numpy())
        assert scored["decision"].tolist() == expected["decision"].tolist()
        assert scored["reason_codes"].tolist() == expected["reason_codes"].tolist()
    with_values = [r for r in got["reason_codes"] if r]
    assert len(with_values) > 300 and any('"value":null' in r for r in with_values)
