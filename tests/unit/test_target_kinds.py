"""A label codec per target kind: binary, categories and numbers (regression), chosen by the spec's
target_kind, which older specs derive; the expectation suite asks the codec what the label may hold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.labels import LABEL_COLUMN, CategoryCodec, LabelCodec, LabelError, NumericCodec
from features.spec import DatasetSpec, PartialSpec, conform, infer_spec
from ledgerline.errors import DataError, SpecError


@pytest.mark.parametrize("value", [250000, 250000.5, "250000", " 1.5e5 ", -3, 0.1])
def test_a_realised_value_is_accepted_as_a_number_whose_canonical_text_round_trips(value: object) -> None:
    codec = NumericCodec("price")
    canonical = codec.accept(value)
    assert codec.decode(canonical) == float(str(value).strip())
    assert codec.accept(canonical) == canonical


@pytest.mark.parametrize("value", ["cheap", "", True, None, float("nan"), float("inf"), "inf", [1]])
def test_a_value_that_is_not_a_finite_number_is_refused_saying_so(value: object) -> None:
    with pytest.raises(LabelError, match="number"):
        NumericCodec("price").accept(value)


def test_numeric_training_targets_encode_as_float64_and_junk_is_named() -> None:
    codec = NumericCodec("price")
    out = codec.encode_training(pd.Series(["1.5", 2, 3.25]))
    assert out.dtype == np.float64 and out.tolist() == [1.5, 2.0, 3.25]
    assert codec.describe() == "a number" and codec.kind == "numeric"
    with pytest.raises(DataError, match=r"price.*not finite numbers.*'n/a'"):
        codec.encode_training(pd.Series(["1", "n/a", None]))


def test_older_specs_derive_their_target_kind_and_keep_loading() -> None:
    binary = DatasetSpec.from_dict({"target": "y", "positive_label": "bad", "columns": {"x": {"type": "numeric"}}})
    multi = DatasetSpec.from_dict({"target": "y", "classes": ["a", "b"], "columns": {"x": {"type": "numeric"}}})
    none = DatasetSpec.from_dict({"columns": {"x": {"type": "numeric"}}})
    assert (binary.target_kind, multi.target_kind, none.target_kind) == ("binary", "multiclass", None)
    assert isinstance(binary.label_codec, LabelCodec) and isinstance(multi.label_codec, CategoryCodec)


def test_a_numeric_spec_needs_no_positive_label_and_round_trips() -> None:
    spec = DatasetSpec.from_dict({"target": "price", "target_kind": "numeric", "columns": {"x": {"type": "numeric"}}})
    assert isinstance(spec.label_codec, NumericCodec)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec and spec.to_dict()["target_kind"] == "numeric"
    with pytest.raises(SpecError, match="numeric target takes no positive_label"):
        DatasetSpec.from_dict({"target": "p", "target_kind": "numeric", "positive_label": "x",
                               "columns": {"x": {"type": "numeric"}}})
    with pytest.raises(SpecError, match="target_kind"):
        DatasetSpec.from_dict({"target": "p", "target_kind": "money", "columns": {"x": {"type": "numeric"}}})


def _sales(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    size = rng.uniform(30, 200, n)
    return pd.DataFrame({
        "size": size,
        "kind": rng.choice(["flat", "house"], n),
        "sold": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "price": (size * 3000 + rng.normal(0, 1000, n)).round(2).astype(str),
    })


def test_infer_spec_takes_a_numeric_target_with_roles_and_a_datetime_column() -> None:
    partial = PartialSpec(roles={"time": "sold", "segment": "kind"}, columns={"sold": {"type": "datetime"}})
    spec = infer_spec(_sales(), target="price", partial=partial, name="homes", target_kind="numeric")
    assert spec.target_kind == "numeric" and spec.positive_label is None and spec.positive_rate is None
    assert spec.column("sold").kind == "datetime" and dict(spec.roles) == {"time": "sold", "segment": "kind"}
    frame = conform(_sales(), spec)
    assert frame[LABEL_COLUMN].dtype == np.float64 and frame["price"].dtype == np.float64
    assert math.isclose(float(frame[LABEL_COLUMN].iloc[0]), float(_sales()["price"].iloc[0]))
    with pytest.raises(DataError, match="no positive label"):
        infer_spec(_sales(), target="price", positive_label="1", partial=PartialSpec(), target_kind="numeric")


def test_the_suite_checks_what_each_codec_says_the_label_may_hold() -> None:
    from expectations.suite import build_suite

    partial = PartialSpec(columns={"sold": {"type": "datetime"}})
    spec = infer_spec(_sales(), target="price", partial=partial, name="homes", target_kind="numeric")
    kinds = {(type(e).__name__, getattr(e, "column", None)) for e in build_suite(spec).expectations}
    assert ("ExpectColumnValuesToBeInTypeList", LABEL_COLUMN) in kinds
    assert not any(name == "ExpectColumnValuesToBeInSet" and col == LABEL_COLUMN for name, col in kinds)
    binary = DatasetSpec.from_dict({"target": "y", "positive_label": "1", "columns": {"x": {"type": "numeric"}}})
    sets = [e for e in build_suite(binary).expectations
            if type(e).__name__ == "ExpectColumnValuesToBeInSet" and e.column == LABEL_COLUMN]
    assert [list(e.value_set) for e in sets] == [[0, 1]]
