"""Train options are declared by the family; one builder makes the request for the CLI and the DAG."""

from __future__ import annotations

import pytest

from ledgerline.errors import LedgerlineError
from training.family import TrainingFamilyBase, TrainOption
from training.requests import all_train_options, train_request


def test_an_option_the_family_does_not_take_is_refused_naming_the_ones_it_takes() -> None:
    with pytest.raises(LedgerlineError, match="--freq is not an option of transaction-category; "
                                              "transaction-category takes --text-column"):
        train_request("transaction-category", data="x.csv", target="kind", options={"freq": "MS"})
    with pytest.raises(LedgerlineError, match="credit-risk takes no family options"):
        train_request("credit-risk", data="x.csv", target="y", positive_label="1", options={"text_column": "memo"})


def test_options_become_the_spec_roles_and_settings_the_family_declares() -> None:
    req = train_request(
        "spending-forecast", data="s.csv", target="y",
        options={"series_column": "sid", "time_column": "ds", "freq": "MS", "horizon": "12", "allow_negative": False,
                 "text_column": None},
    )
    assert dict(req.roles or {}) == {"series": "sid", "timestamp": "ds"}
    assert dict(req.series or {}) == {"freq": "MS", "horizon": 12}
    cat = train_request("transaction-category", data="c.csv", target="kind", options={"text_column": "memo"})
    assert dict(cat.roles or {}) == {"text": "memo"} and cat.series is None


def test_the_family_checks_its_options_before_any_work() -> None:
    with pytest.raises(LedgerlineError, match="go with --data"):
        train_request("spending-forecast", options={"series_column": "sid", "freq": "MS"})
    with pytest.raises(LedgerlineError, match="needs --time-column, --freq, --horizon"):
        train_request("spending-forecast", data="s.csv", target="y", options={"series_column": "sid"})
    with pytest.raises(LedgerlineError, match="--horizon 0 is out of range"):
        train_request("spending-forecast", data="s.csv", target="y",
                      options={"series_column": "s", "time_column": "d", "freq": "MS", "horizon": 0})
    with pytest.raises(LedgerlineError, match="--freq must be one of MS, W, D"):
        train_request("spending-forecast", data="s.csv", target="y",
                      options={"series_column": "s", "time_column": "d", "freq": "Y", "horizon": 3})


def test_the_target_options_follow_the_family_target_kind() -> None:
    with pytest.raises(LedgerlineError, match="without --positive-label"):
        train_request("transaction-category", data="c.csv", target="kind", positive_label="x")
    with pytest.raises(LedgerlineError, match="needs --positive-label"):
        train_request("credit-risk", data="c.csv", target="y")
    assert train_request("transaction-anomaly", data="t.csv").target is None  # no target: fine


def test_every_flag_a_family_declares_is_declared_alike_by_the_others() -> None:
    for flag, users in all_train_options().items():
        first = users[0][1]
        assert all((o.switch, o.type, o.choices) == (first.switch, first.type, first.choices) for _, o in users), flag


def test_a_train_option_names_a_role_or_a_setting() -> None:
    with pytest.raises(ValueError, match="exactly one of role or setting"):
        TrainOption("--segment-column", "the asset type")
    assert TrainOption("--segment-column", "the asset type", role="segment").dest == "segment_column"
    assert TrainingFamilyBase.train_options == ()
