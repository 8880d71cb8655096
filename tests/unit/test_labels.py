"""The label codec: 1 is always the positive class, from training labels to feedback to monitoring."""

from __future__ import annotations

import pandas as pd
import pytest

from features.labels import LabelCodec, LabelError
from features.spec import LABEL_COLUMN, DatasetSpec, conform, infer_spec
from ledgerline.errors import DataError


def test_training_labels_encode_the_positive_label_as_one() -> None:
    codec = LabelCodec("Status", "bad", ("good",))
    assert codec.encode_training(pd.Series(["good", "bad", "bad", "good"])).tolist() == [0, 1, 1, 0]


def test_positive_label_zero_encodes_zero_as_one_at_training_and_at_feedback() -> None:
    codec = LabelCodec("default", "0", ("1",))
    assert codec.encode_training(pd.Series([0, 1, 1, 0])).tolist() == [1, 0, 0, 1]
    assert codec.accept(0) == "1" and codec.accept("0") == "1"
    assert codec.accept(1) == "0" and codec.accept("1") == "0"


def test_one_is_the_canonical_positive_when_the_data_calls_it_something_else() -> None:
    codec = LabelCodec("Status", "bad", ("good",))
    assert codec.accept("bad") == "1" and codec.accept(1) == "1" and codec.accept("1") == "1"
    assert codec.accept("good") == "0" and codec.accept(0) == "0" and codec.accept("0") == "0"
    assert codec.decode("1") == 1 and codec.decode("0") == 0


def test_outcome_matching_ignores_case_and_surrounding_spaces() -> None:
    codec = LabelCodec("Status", "Bad", ("Good",))
    assert codec.accept(" bad ") == "1" and codec.accept("GOOD") == "0"


@pytest.mark.parametrize("value", ["defaulted", "2", 2, -1, "", True, 0.5])
def test_an_unknown_outcome_is_refused_naming_the_allowed_values(value: object) -> None:
    codec = LabelCodec("Status", "bad", ("good",))
    with pytest.raises(LabelError, match=r"'bad' \(positive\), 'good' \(negative\), '1' \(positive\), '0' \(negative\)"):
        codec.accept(value)
    assert LabelCodec("Status", "bad", ("good",)).allowed_values == ("bad", "good", "1", "0")


def test_decode_refuses_a_label_that_is_not_canonical() -> None:
    with pytest.raises(ValueError, match="not canonical"):
        LabelCodec.decode("bad")


def test_a_spec_without_recorded_negatives_still_knows_the_other_of_zero_and_one() -> None:
    assert LabelCodec("y", "0").negative_labels == ("1",)
    legacy = LabelCodec("Status", "bad")
    assert legacy.allowed_values == ("bad", "1", "0")
    assert legacy.encode_training(pd.Series(["bad", "good", "meh"])).tolist() == [1, 0, 0]


def test_a_snapshot_with_a_label_the_spec_does_not_know_is_refused() -> None:
    codec = LabelCodec("Status", "bad", ("good",))
    with pytest.raises(DataError, match=r"values \['ok'\] the spec does not know"):
        codec.encode_training(pd.Series(["bad", "ok"]))


def test_a_label_cannot_be_both_positive_and_negative() -> None:
    with pytest.raises(DataError, match="both the positive and a negative"):
        LabelCodec("Status", "bad", ("bad", "good"))


def _loans() -> pd.DataFrame:
    return pd.DataFrame({"income": [float(i) for i in range(8)], "Status": ["good", "bad"] * 4})


def test_the_inferred_spec_records_the_negative_labels_and_survives_yaml() -> None:
    import yaml

    spec = infer_spec(_loans(), target="Status", positive_label="bad", name="t")
    assert spec.negative_labels == ("good",)
    again = DatasetSpec.from_dict(yaml.safe_load(spec.to_yaml()))
    assert again.negative_labels == ("good",) and again.label_codec == spec.label_codec
    assert conform(_loans(), again)[LABEL_COLUMN].tolist() == [0, 1] * 4
