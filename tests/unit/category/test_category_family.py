"""Transaction categorisation without services: the generator, normalisation, the grouped split,
the label codec, a tiny trained model, the answers and the monitoring plug-in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from families.transaction_category.data import (
    CATEGORIES,
    generate_statement_lines,
    merchant_key,
    normalise,
    text_features,
)
from families.transaction_category.fit import grouped_split
from features.labels import CategoryCodec, LabelError


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    return generate_statement_lines(3000, seed=5)


@pytest.fixture(scope="module")
def trained(lines):
    from families.transaction_category.data import category_spec
    from families.transaction_category.train import FAMILY

    spec = category_spec("unit-category")
    frame = FAMILY.conform(lines, spec)
    train_df, test_df = FAMILY.split(frame, spec, seed=1)
    model = FAMILY.train(train_df, spec, FAMILY.params(1, None))
    return spec, model, train_df, test_df


def test_the_generator_is_seeded_and_has_every_category_and_hundreds_of_merchants(lines):
    again = generate_statement_lines(3000, seed=5)
    pd.testing.assert_frame_equal(lines, again)
    assert not generate_statement_lines(3000, seed=6)["description"].equals(lines["description"])
    assert list(lines.columns) == ["transaction_id", "description", "amount", "currency", "country", "category", "merchant"]
    assert set(lines["category"]) == set(CATEGORIES) and len(CATEGORIES) >= 12
    assert lines["merchant"].nunique() >= 300
    assert lines["description"].str.len().max() <= 60
    assert lines["description"].str.contains(r"^(?:SQ \*|TST\* |PAYPAL \*|POS )", case=False).mean() > 0.2
    assert lines["transaction_id"].is_unique


@pytest.mark.parametrize(("raw", "normalised"), [
    ("SQ *BLUE BOTTLE 0421 OAKLAND CA", "blue bottle oakland"),
    ("TST* Cormi Bbq #7010 Portland Or", "cormi bbq portland"),
    ("POS  PAYPAL *EBAY 55", "ebay"),
    ("paypal *harbor west bo boston ma", "harbor west bo boston"),
    ("1234 5678", ""),
    ("   ", ""),
])
def test_descriptions_normalise_to_the_merchant_without_prefixes_numbers_and_state(raw, normalised):
    assert normalise(raw) == normalised
    assert merchant_key(raw) == normalised


def test_text_features_are_word_and_character_ngrams_plus_the_processor():
    feats = text_features("SQ *Blue 12")
    assert "w:blue" in feats and " bl" in feats and "blue " in feats and "p:sq" in feats
    assert not any(ch.isdigit() for f in feats for ch in f)


def test_the_holdout_shares_no_merchant_with_training_and_corrections_stay_in_training(lines):
    groups = lines["merchant"].to_numpy()
    forced = np.flatnonzero(groups == groups[0])
    train_idx, test_idx = grouped_split(groups, 0.2, 3, forced)
    assert set(groups[train_idx]).isdisjoint(groups[test_idx])
    assert 0.1 < len(test_idx) / len(groups) < 0.35
    assert set(forced) <= set(train_idx)
    again = grouped_split(groups[::-1], 0.2, 3)
    assert set(groups[::-1][again[1]]) == set(groups[grouped_split(groups, 0.2, 3)[1]])  # order does not matter


def test_the_category_codec_takes_category_names_and_refuses_others():
    codec = CategoryCodec("category", ("dining", "fuel"))
    assert codec.accept("dining") == "dining"
    assert codec.accept(" Fuel ") == "fuel"
    assert codec.decode("fuel") == "fuel"
    for bad in ("1", "coffee", 3, True):
        with pytest.raises(LabelError, match="dining"):
            codec.accept(bad)
    with pytest.raises(ValueError):
        codec.decode("0")
    assert codec.encode_training(pd.Series(["fuel", "dining"])).tolist() == [1, 0]


def test_a_spec_with_classes_round_trips_and_gives_the_category_codec():
    from families.transaction_category.data import category_spec
    from features.spec import DatasetSpec

    spec = category_spec("x")
    again = DatasetSpec.from_dict(spec.to_dict())
    assert again.classes == CATEGORIES and again.roles["text"] == "description"
    assert isinstance(again.label_codec, CategoryCodec)


def test_a_small_model_categorises_unseen_merchants_and_records_the_compared_candidates(trained):
    from families.transaction_category.train import FAMILY

    spec, model, _, test_df = trained
    metrics = FAMILY.evaluate(model, test_df, spec)
    assert metrics["macro_f1"] > 0.55 and metrics["top3_accuracy"] > metrics["accuracy"]
    assert 0 <= metrics["ece"] < 0.2 and metrics["log_loss"] > 0
    assert {f"recall_{c}" for c in CATEGORIES} <= set(metrics)
    assert set(model.comparison_["candidates"]) == {"logreg", "linear_svm"}
    assert model.comparison_["chosen"] == model.candidate_
    report = FAMILY.report(model, test_df, spec, metrics)
    assert "plots/confusion_matrix.png" in report.figures
    decision_rules = [r.metric for r in FAMILY.gate_policy(None).rules]  # type: ignore[arg-type]
    assert decision_rules == ["macro_f1", "min_class_recall"]


def test_offline_scores_give_the_top_category_also_when_the_answer_would_abstain(trained):
    from families.transaction_category.serve import FAMILY as SERVING
    from serving.family import ServingContext
    from serving.settings import ServingSettings

    spec, model, _, test_df = trained
    settings = ServingSettings(models=["x"], api_keys=["k" * 16], admin_key="a" * 16,
                               families={"transaction-category": {"min_confidence": 0.99}})
    ctx = ServingContext("x", "1", settings, spec, [], None)  # type: ignore[arg-type]
    frame = test_df[["description", "amount", "currency", "country"]].head(20).copy()
    frame.iloc[0, 0] = "123456"
    out = SERVING.score_frame(model, frame, ctx)
    assert list(out.columns) == ["category", "category_probability", "top3", "abstained"]
    assert out["category"].notna().all() and out["abstained"].iloc[0]
    assert out["top3"].str.count(r"\|").eq(2).all()
    assert (out["top3"].str.split("|").str[0] == out["category"]).all()


def test_monitoring_reads_accuracy_correction_rate_and_category_psi():
    from families.transaction_category.monitor import FAMILY as MON
    from monitoring.settings import MonitoringSettings

    y = np.asarray(["dining", "fuel", "dining", "fuel"], dtype=object)
    outputs = [{"model_category": c, "category": c, "source": "model"} for c in ("dining", "fuel", "fuel", "fuel")]
    live = MON.live_metrics(y, np.full(4, 0.9), outputs)
    assert live["accuracy"] == pytest.approx(0.75) and 0 < live["macro_f1"] < 1
    window = [{"model_category": "dining", "category": "dining", "__label__": None}] * 90 + [
        {"model_category": "dining", "category": "dining", "__label__": "fuel"}] * 10
    m = MON.window_metrics(np.full(100, 0.9), window, {"share_dining": 0.5, "share_fuel": 0.5})
    assert m["correction_rate"] == pytest.approx(0.1) and m["new_corrections"] == 10
    assert m["category_psi"] > 0.25
    mon = MonitoringSettings(families={"transaction-category": {"max_correction_rate": 0.05, "retrain_corrections": 5}})
    breached = [r.metric for r in MON.window_rules(mon) if not r.check_absolute(m[r.metric])[0]]
    assert breached == ["correction_rate", "new_corrections", "category_psi"]
