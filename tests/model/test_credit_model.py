"""Model tests: quality floor and directional behaviour of a real (small) credit model."""

import numpy as np
import pytest

from families.credit_risk import fit as credit_risk
from families.credit_risk.data import credit_spec, generate_loan_applications
from features.spec import LABEL_COLUMN, conform
from training.pipeline import split


@pytest.fixture(scope="module")
def trained():
    spec = credit_spec()
    frame = conform(generate_loan_applications(12_000, seed=21), spec)
    train_df, test_df = split(frame, spec, 21, "credit-risk")
    model = credit_risk.train(train_df[spec.feature_names], train_df[LABEL_COLUMN].to_numpy(), spec)
    return spec, model, test_df


def test_auc_on_the_generated_holdout_is_above_the_floor(trained):
    spec, model, test_df = trained
    metrics = credit_risk.evaluate(model, test_df[spec.feature_names], test_df[LABEL_COLUMN].to_numpy())
    assert metrics["roc_auc"] > 0.72
    assert metrics["ks"] > 0.3
    assert metrics["calibration_error"] < 0.05


def test_higher_debt_to_income_never_lowers_the_default_probability(trained):
    spec, model, test_df = trained
    X = test_df[spec.feature_names].head(300).copy()
    base = credit_risk.predict_proba(model, X)
    for bump in (5, 15, 30):
        higher = credit_risk.predict_proba(model, X.assign(debt_to_income=X.debt_to_income + bump))
        assert (higher >= base - 1e-6).all()
    assert (credit_risk.predict_proba(model, X.assign(debt_to_income=X.debt_to_income + 30)) > base).mean() > 0.5


def test_more_income_never_raises_the_default_probability(trained):
    spec, model, test_df = trained
    X = test_df[spec.feature_names].head(300).copy()
    base = credit_risk.predict_proba(model, X)
    assert (credit_risk.predict_proba(model, X.assign(annual_income=X.annual_income * 2)) <= base + 1e-6).all()


def test_predictions_ignore_the_application_id_and_survive_missing_values(trained):
    spec, model, test_df = trained
    X = test_df[spec.feature_names].head(50).copy()
    assert "application_id" not in spec.feature_names
    p = credit_risk.predict_proba(model, X.assign(employment_length_years=np.nan, revolving_utilization=np.nan))
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def test_reason_codes_sum_to_the_log_odds(trained):
    spec, model, test_df = trained
    X = test_df[spec.feature_names].head(20)
    contribs = credit_risk.contributions(model, X)
    assert contribs.shape == (20, len(spec.feature_names))
    p = credit_risk.predict_proba(model, X)
    booster = model.named_steps["model"].get_booster()
    import xgboost as xgb

    raw = booster.predict(xgb.DMatrix(model.named_steps["features"].transform(X)), pred_contribs=True)
    np.testing.assert_allclose(contribs.sum(axis=1) + raw[:, -1], np.log(p / (1 - p)), rtol=1e-3, atol=1e-3)
