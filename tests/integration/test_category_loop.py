"""Transaction categorisation end to end on the real services: train through the pipeline, serve in
two app instances (two workers) on one Postgres, correct a category (a rule in every worker within
a second, listed and reverted by an admin, latest correction wins), retrain with the corrections,
and bring your own file (``ledgerline train ... --text-column``, ``ledgerline score``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from apps.cli import main
from families.transaction_category.data import generate_statement_lines

pytestmark = pytest.mark.integration

MODEL = "cat-loop"
API_KEY = "category-test-key-0001"
ADMIN_KEY = "category-admin-key-0001"
H = {"X-API-Key": API_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
PREDICT = f"/v1/models/{MODEL}/predict"


@pytest.fixture(scope="module")
def platform(session_settings: Any, make_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The session's services with an app database of this module's own (prediction log, rules, ledger)."""
    root = tmp_path_factory.mktemp("category")
    return session_settings.model_copy(update={
        "app_db_url": make_database("category_app"), "data_dir": root / "data", "home": root / "home",
    })


@pytest.fixture(scope="module")
def trained(platform: Any) -> Any:
    from training.pipeline import TrainRequest, run_training

    return run_training(platform, TrainRequest(family="transaction-category", model_name=MODEL, rows=3000, seed=42,
                                               logical_date="2026-01-05"))


@pytest.fixture(scope="module")
def workers(trained: Any, platform: Any) -> Iterator[tuple[Any, Any]]:
    """Two serving app instances, as two uvicorn workers: each its own memory, one database."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServingSettings

    settings = ServingSettings(
        models=[MODEL], api_keys=[API_KEY], admin_key=ADMIN_KEY, poll_interval_seconds=3600,
        log_flush_interval_seconds=0.05, feedback_wait_seconds=0.5, families={"transaction-category": {"min_confidence": 0.4}},
    )
    a = TestClient(create_app(settings, platform))
    b = TestClient(create_app(settings, platform))
    with a, b:
        yield a, b


def _line(description: str, amount: float = 80.0) -> dict[str, Any]:
    return {"transaction_id": "t-1", "description": description, "amount": amount, "currency": "USD", "country": "US"}


def _answer(client: Any, description: str, amount: float = 80.0) -> dict[str, Any]:
    r = client.post(PREDICT, json=_line(description, amount), headers=H)
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]  # type: ignore[no-any-return]


def _correct(client: Any, prediction_id: str, category: str) -> None:
    r = client.post("/v1/feedback", json={"prediction_id": prediction_id, "label": category}, headers=H)
    assert r.status_code == 201, r.text
    assert r.json()["label"] == category


def _until(check: Any, seconds: float) -> float:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < seconds, f"not within {seconds}s"
        time.sleep(0.02)
    return time.monotonic() - t0


def test_training_compares_candidates_on_unseen_merchants_and_logs_the_confusion_matrix(trained: Any, platform: Any) -> None:
    from ledgerline.registry import client

    assert trained.decision.passed and trained.champion == trained.version
    c = client(platform)
    run = c.get_run(trained.run_id)
    for name in ("macro_f1", "accuracy", "top3_accuracy", "log_loss", "ece", "min_class_recall", "recall_dining"):
        assert f"test_{name}" in run.data.metrics
    assert run.data.metrics["test_top3_accuracy"] >= run.data.metrics["test_accuracy"]
    paths = {a.path for a in c.list_artifacts(trained.run_id, "plots")}
    assert "plots/confusion_matrix.png" in paths
    candidates = json.loads(open(c.download_artifacts(trained.run_id, "evaluation/candidates.json")).read())
    assert set(candidates["candidates"]) == {"logreg", "linear_svm"} and candidates["chosen"] in candidates["candidates"]
    assert "merchant-grouped" in candidates["chosen_by"]


def test_an_answer_has_the_category_top3_and_ngrams_and_bad_lines_get_defined_answers(workers: Any) -> None:
    a, _ = workers
    ans = _answer(a, "SQ *BLUE BOTTLE COFFEE 0421 OAKLAND CA", 6.5)
    assert ans["category"] == "dining" and ans["source"] == "model" and not ans["abstained"]
    assert len(ans["alternatives"]) == 3 and ans["alternatives"][0]["category"] == "dining"
    assert ans["probability"] == ans["alternatives"][0]["probability"]
    assert any("coffee" in f["feature"] or "cof" in f["feature"] for f in ans["explanation"])
    digits = _answer(a, "123456 789")
    assert digits["category"] is None and digits["abstained"] and "no letters" in digits["note"]
    assert len(digits["alternatives"]) == 3
    for body, field in ((_line(""), "description"), (_line("x" * 10_000), "description"),
                        ({**_line("CAFE"), "currency": "XYZ"}, "currency")):
        r = a.post(PREDICT, json=body, headers=H)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == f"body.{field}"
    schemas = a.get("/openapi.json").json()["components"]["schemas"]
    assert {"CategoryPrediction", "CategoryCandidate"} <= set(schemas)
    assert "alternatives" in schemas["CategoryPrediction"]["properties"]


def test_a_correction_reaches_every_worker_within_a_second_and_an_admin_can_revert_it(workers: Any) -> None:
    a, b = workers
    line = "POS QWERTY PLOP #4411 AUSTIN TX"
    first = _answer(a, line)
    wrong = first["model_category"]
    target = "travel" if wrong != "travel" else "income"
    assert _answer(b, line)["source"] == "model"
    _correct(a, first["prediction_id"], target)
    assert _answer(a, "QWERTY PLOP 9 AUSTIN TX")["category"] == target  # the worker that took it: at once
    waited = _until(lambda: _answer(b, "qwerty  plop austin tx")["source"] == "correction", 1.0)
    other = _answer(b, "QWERTY PLOP AUSTIN TX")
    assert other["category"] == target and other["correction"]["merchant"] == "qwerty plop austin"
    assert other["model_category"] == wrong and waited < 1.0

    latest = "fees" if target != "fees" else "cash_atm"  # conflicting corrections: the latest wins
    _correct(a, other["prediction_id"], latest)
    _until(lambda: _answer(b, line)["category"] == latest, 1.0)
    rules = a.get(f"/admin/models/{MODEL}/corrections", headers=ADMIN).json()
    rule = next(r for r in rules["rules"] if r["merchant"] == "qwerty plop austin")
    assert rule["category"] == latest and rule["corrections"] == 2 and "latest" in rules["policy"]
    assert a.get(f"/admin/models/{MODEL}/corrections", headers=H).status_code == 403

    r = a.delete(f"/admin/models/{MODEL}/corrections", params={"merchant": "qwerty plop austin"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["changed"] is True
    assert "reverted" in r.json()["detail"]
    _until(lambda: _answer(b, line)["source"] == "model", 1.0)
    again = a.delete(f"/admin/models/{MODEL}/corrections", params={"merchant": "qwerty plop austin"}, headers=ADMIN)
    assert again.status_code == 200 and again.json()["changed"] is False  # a no-op: the same version, and it says so
    assert again.json()["version"] == r.json()["version"] and again.json()["updated_at"] == r.json()["updated_at"]
    assert "already reverted" in again.json()["detail"] and "nothing changed" in again.json()["detail"]
    assert a.delete(f"/admin/models/{MODEL}/corrections", params={"merchant": "nope"}, headers=ADMIN).status_code == 404
    listed = a.get(f"/admin/models/{MODEL}/corrections", params={"all": "true"}, headers=ADMIN).json()["rules"]
    assert any(r["merchant"] == "qwerty plop austin" and not r["active"] for r in listed)


def test_reverting_a_rule_twice_changes_nothing_the_second_time(make_database: Any) -> None:
    """The second revert of a rule is a no-op: no new version (workers would fetch it again for nothing),
    the corrections keep the time of the first revert; a correction after it makes the rule active again."""
    from families.transaction_category.corrections import latest_version, record_correction, revert_rule, rules_since
    from ledgerline import db

    engine = db.engine_for(make_database("category_revert"))
    db.upgrade(engine)
    record_correction(engine, "m", "acme market", "groceries", "p-1")
    first = revert_rule(engine, "m", "acme market")
    assert first is not None and first.changed and not first.rule.active and first.rule.version == 2
    record_correction(engine, "m", "other shop", "shopping", "p-2")
    second = revert_rule(engine, "m", "acme market")
    assert second is not None and not second.changed and second.rule == first.rule
    assert latest_version(engine, "m") == 3 and [r.merchant_key for r in rules_since(engine, "m", 2)] == ["other shop"]
    assert revert_rule(engine, "m", "nobody") is None
    again = record_correction(engine, "m", "acme market", "dining", "p-3")
    assert again.active and again.version == 4 and again.corrections == 2
    third = revert_rule(engine, "m", "acme market")
    assert third is not None and third.changed and third.rule.version == 5


def test_a_correction_that_waited_for_its_prediction_row_still_becomes_a_rule(workers: Any, platform: Any) -> None:
    """Feedback can beat its prediction's row to the database (the row is still in another worker's
    buffer): it is kept as pending (202), and when the row lands the correction becomes a rule too."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServingSettings

    a, b = workers
    slow = ServingSettings(  # a worker whose log holds its rows for a minute
        models=[MODEL], api_keys=[API_KEY], admin_key=ADMIN_KEY, poll_interval_seconds=3600,
        log_flush_interval_seconds=60, log_batch_rows=100_000, feedback_wait_seconds=0.1, families={"transaction-category": {"min_confidence": 0.4}},
    )
    with TestClient(create_app(slow, platform)) as c:
        line = "TST* GLIMMERFEN 0093 RENO NV"
        first = _answer(c, line)
        target = "transport" if first["model_category"] != "transport" else "groceries"
        r = a.post("/v1/feedback", json={"prediction_id": first["prediction_id"], "label": target}, headers=H)
        assert r.status_code == 202, r.text  # pending: the row is not in the database yet
        assert _answer(b, line)["source"] == "model"
        c.app.state.serving.log.flush(timeout=10)  # type: ignore[attr-defined]
        _until(lambda: _answer(b, line)["source"] == "correction", 2.0)
        assert _answer(b, "GLIMMERFEN RENO NV")["category"] == target


def test_the_next_retrain_learns_the_corrected_merchant_and_records_it_in_the_lineage(workers: Any, trained: Any, platform: Any) -> None:
    from ledgerline.registry import client
    from training.family import get_family
    from training.pipeline import TrainRequest, run_training

    a, _ = workers
    family = get_family("transaction-category")
    old = family.load_model(f"models:/{MODEL}/{trained.version}")
    probe = pd.DataFrame([_line("POS ZORBLAX QUANTUM #17 AUSTIN TX", 55.0)])
    before = str(old.predict(probe)[0])  # type: ignore[attr-defined]
    target = "health" if before != "health" else "utilities"
    for i, text in enumerate(("ZORBLAX QUANTUM 0012 AUSTIN TX", "POS ZORBLAX QUANTUM", "Zorblax Quantum #88 Austin Tx")):
        ans = _answer(a, text, 50.0 + i)
        assert ans["model_category"] != target
        _correct(a, ans["prediction_id"], target)

    result = run_training(platform, TrainRequest(family="transaction-category", model_name=MODEL, rows=2000, seed=43,
                                                 logical_date="2026-01-12", trigger="performance"))
    run = client(platform).get_run(result.run_id)
    assert int(run.data.tags["ledgerline.corrections.lines"]) >= 3
    new = family.load_model(f"models:/{MODEL}/{result.version}")
    assert str(new.predict(probe)[0]) == target  # type: ignore[attr-defined]  # the model itself, no rule


def test_your_own_file_trains_with_a_text_column_and_scores_with_category_columns(
    platform: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", platform.tracking_uri)
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", platform.resolved_app_db_url())
    monkeypatch.setenv("LEDGERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGERLINE_HOME", str(tmp_path / "home"))
    lines = generate_statement_lines(1500, seed=9).rename(
        columns={"description": "memo", "amount": "amt", "category": "kind", "transaction_id": "id"}
    ).drop(columns=["merchant", "country"])
    src = tmp_path / "mine.csv"
    lines.to_csv(src, index=False)
    assert main(["train", "transaction-category", "--data", str(src), "--target", "kind", "--positive-label", "x",
                 "--model-name", "cat-byo"]) == 2
    assert "without --positive-label" in capsys.readouterr().err
    assert main(["train", "transaction-category", "--data", str(src), "--target", "kind", "--text-column", "memo",
                 "--model-name", "cat-byo"]) == 0
    new = generate_statement_lines(300, seed=10).rename(columns={"description": "memo", "amount": "amt"})
    new = new.drop(columns=["merchant", "country", "category"])
    new.loc[3, "memo"] = "0000 1111"
    inp, out = tmp_path / "new.parquet", tmp_path / "scored.csv"
    new.to_parquet(inp)
    assert main(["score", "cat-byo", "--input", str(inp), "--output", str(out)]) == 0
    scored = pd.read_csv(out)
    assert list(scored.columns[-4:]) == ["category", "category_probability", "top3", "abstained"]
    assert scored["top3"].str.split("|").str.len().eq(3).all() and scored["category"].notna().all()
    assert bool(scored.loc[3, "abstained"]) and scored["category_probability"].between(0, 1).all()


def test_monitoring_counts_the_corrections_and_asks_for_a_retrain_when_there_are_enough(workers: Any, platform: Any) -> None:
    from monitoring.jobs import run_performance_job
    from monitoring.settings import MonitoringSettings

    a, _ = workers
    for text in [f"MOMOTARO GRILLZ {i}" for i in range(5)]:
        ans = _answer(a, text, 20.0)
        _correct(a, ans["prediction_id"], "fees" if ans["model_category"] != "fees" else "income")
    mon = MonitoringSettings(label_window_days=0, min_labelled_rows=10, min_current_rows=1, current_version_only=False,
                             families={"transaction-category": {"retrain_corrections": 3, "max_correction_rate": 1.0}})
    outcome = run_performance_job(platform, MODEL, mon=mon)
    window = outcome.summary["window_check"]
    assert window["metrics"]["new_corrections"] >= 3 and 0 < window["metrics"]["correction_rate"] <= 1
    assert "new_corrections" in window["breached"] and outcome.status == "degraded"
    assert {"accuracy", "macro_f1"} <= set(outcome.summary["metrics"])
