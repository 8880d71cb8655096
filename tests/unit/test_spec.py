import pandas as pd
import pytest

from families.credit_risk.data import credit_spec, generate_loan_applications
from features.spec import LABEL_COLUMN, DatasetSpec, PartialSpec, conform, infer_spec
from ledgerline.errors import DataError, SpecError


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(6),
            "income": [10.0, 20.0, None, 40.0, 50.0, 60.0],
            "home": ["rent", "own", "rent", None, "own", "rent"],
            "status": ["good", "bad", "good", "good", "bad", "good"],
        }
    )


def test_inferred_spec_types_ranges_domains_and_id_column():
    spec = infer_spec(_frame(), target="status", positive_label="bad", name="t")
    assert spec.id_column == "id"
    assert spec.numeric == ["income"] and spec.categorical == ["home"]
    income = spec.column("income")
    assert income.min == 0.0 and income.max > 60  # widened, non-negative stays non-negative
    assert 0 < income.max_null_fraction < 1
    assert spec.column("home").values == ("own", "rent")
    assert spec.positive_rate[0] <= 2 / 6 <= spec.positive_rate[1]


def test_spec_round_trips_through_yaml():
    spec = credit_spec()
    import yaml

    again = DatasetSpec.from_dict(yaml.safe_load(spec.to_yaml()))
    assert again == spec


def test_yaml_overrides_win_over_inference():
    partial = PartialSpec.from_dict({"columns": {"income": {"type": "categorical"}}, "drop": ["home"]})
    spec = infer_spec(_frame(), target="status", positive_label="bad", partial=partial)
    assert spec.categorical == ["income"] and "home" not in spec.feature_names


def test_numeric_column_with_junk_is_named_with_examples():
    df = pd.concat([_frame()] * 5, ignore_index=True).assign(id=range(30))
    df["income"] = ["10"] * 29 + ["abc"]
    with pytest.raises(DataError, match=r"column 'income' is numeric but has non-numeric values \['abc'\]"):
        infer_spec(df, target="status", positive_label="bad")


@pytest.mark.parametrize(
    ("target", "label", "message"),
    [
        ("nope", "bad", "target column 'nope' is not in the data"),
        ("status", "worse", "positive label 'worse' is not a value of 'status'"),
        ("status", None, "no positive label given"),
    ],
)
def test_target_problems_say_how_to_fix_them(target, label, message):
    with pytest.raises(DataError, match=message):
        infer_spec(_frame(), target=target, positive_label=label)


def test_a_target_with_one_class_is_rejected():
    with pytest.raises(DataError, match="has only one class"):
        infer_spec(_frame().assign(status="good"), target="status", positive_label="good")


def test_conform_maps_label_and_coerces_types():
    raw = generate_loan_applications(300, seed=3)
    out = conform(raw, credit_spec())
    assert out[LABEL_COLUMN].tolist() == raw["default"].tolist()
    assert out["delinquencies_2y"].dtype == "float64"
    assert set(out["purpose"].dropna()) <= set(credit_spec().column("purpose").values)


def test_conform_refuses_missing_feature_columns():
    raw = generate_loan_applications(50, seed=3).drop(columns=["purpose"])
    with pytest.raises(DataError, match=r"lacks columns \['purpose'\]"):
        conform(raw, credit_spec())


def test_malformed_spec_yaml_is_named():
    with pytest.raises(SpecError, match="unknown key 'colums'; allowed: "):
        PartialSpec.from_dict({"target": "x", "colums": {}})
    with pytest.raises(SpecError, match="'columns.a.type' must be 'numeric', 'categorical' or 'datetime', got 'text'"):
        DatasetSpec.from_dict({"target": "x", "positive_label": "1", "columns": {"a": {"type": "text"}}})


def test_generator_is_deterministic_and_realistic():
    a, b = generate_loan_applications(2000, seed=11), generate_loan_applications(2000, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert 0.05 < a["default"].mean() < 0.25
    assert a["employment_length_years"].isna().any() and a["revolving_utilization"].isna().any()
    # the latent model: high-DTI applicants default more often than low-DTI ones
    hi = a[a.debt_to_income > a.debt_to_income.quantile(0.8)]["default"].mean()
    lo = a[a.debt_to_income < a.debt_to_income.quantile(0.2)]["default"].mean()
    assert hi > lo * 1.5


def test_negative_labels_in_yaml_may_be_one_value_or_a_list():
    base = {"target": "Status", "positive_label": "bad", "columns": {"a": {"type": "numeric"}}}
    assert DatasetSpec.from_dict({**base, "negative_labels": "good"}).negative_labels == ("good",)
    assert DatasetSpec.from_dict({**base, "negative_labels": ["good"]}).negative_labels == ("good",)
    with pytest.raises(SpecError, match="'negative_labels' must be a list"):
        PartialSpec.from_dict({**base, "negative_labels": {"good": 0}})


def test_a_spec_frozen_before_negative_labels_gets_them_from_the_data():
    from features.spec import with_observed_labels

    legacy = credit_spec()
    assert legacy.negative_labels == ()
    filled = with_observed_labels(legacy, generate_loan_applications(50, seed=3))
    assert filled.negative_labels == ("0",) and "negative_labels" in filled.to_dict()
