"""The DAG folder parses cleanly and the DAGs have the shape the platform relies on (no services)."""

from __future__ import annotations

from typing import Any

import pytest

from apps import orchestration as orch
from training.family import FAMILIES
from training.pipeline import TRIGGERS

RETRAIN_ORDER = ["ingest", "validate", "train", "gate", "promote"]
CHUNKED_ORDER = ["ingest", "validate", "plan_chunks", "train_chunk", "gather", "gate", "promote"]
ONE_PIECE = sorted(f for f in FAMILIES if not orch.trains_in_chunks(f))
CHUNKED = sorted(f for f in FAMILIES if orch.trains_in_chunks(f))


@pytest.fixture(scope="module")
def dags(dag_structure: dict[str, Any]) -> dict[str, Any]:
    return dag_structure["dags"]


def test_every_dag_file_imports_without_errors(dag_structure: dict[str, Any]) -> None:
    assert dag_structure["import_errors"] == {}


def test_parsing_the_dag_folder_imports_nothing_heavy(dag_structure: dict[str, Any]) -> None:
    assert dag_structure["heavy_modules_loaded"] == []


def test_there_is_one_retrain_dag_per_family_and_one_monitoring_dag(dags: dict[str, Any]) -> None:
    expected = {orch.retrain_dag_id(f) for f in FAMILIES} | {orch.MONITORING_DAG_ID} | BATCH_DAGS
    assert set(dags) == expected
    assert orch.retrain_dag_id("credit-risk") == "ledgerline_retrain_credit_risk"


@pytest.mark.parametrize("family", ONE_PIECE)
def test_retrain_dag_runs_ingest_validate_train_gate_promote_in_order(dags: dict[str, Any], family: str) -> None:
    dag = dags[orch.retrain_dag_id(family)]
    assert dag["topological_order"] == RETRAIN_ORDER
    tasks = dag["tasks"]
    assert set(tasks) == set(RETRAIN_ORDER)
    for before, after in zip(RETRAIN_ORDER, RETRAIN_ORDER[1:], strict=False):
        assert after in tasks[before]["downstream"], f"{before} -> {after}"
    assert tasks["ingest"]["upstream"] == []
    # promote needs the version (train), the MLflow run (validate) and the decision (gate)
    assert tasks["promote"]["upstream"] == ["gate", "train", "validate"]


@pytest.mark.parametrize("family", CHUNKED)
def test_a_chunked_family_maps_its_training_over_chunks_and_gathers_one_version(dags: dict[str, Any], family: str) -> None:
    dag = dags[orch.retrain_dag_id(family)]
    assert dag["topological_order"] == CHUNKED_ORDER
    tasks = dag["tasks"]
    assert set(tasks) == set(CHUNKED_ORDER)
    assert tasks["train_chunk"]["mapped"] and not tasks["gather"]["mapped"]
    assert tasks["train_chunk"]["upstream"] == ["ingest", "plan_chunks", "validate"]
    assert tasks["gather"]["upstream"] == ["ingest", "train_chunk", "validate"]
    assert tasks["promote"]["upstream"] == ["gate", "gather", "validate"]
    assert dag["params"]["max_chunks"]["value"] is None  # default: LEDGERLINE_MAX_CHUNKS, else 16


def test_families_without_chunks_have_no_max_chunks_param(dags: dict[str, Any]) -> None:
    for family in ONE_PIECE:
        assert "max_chunks" not in dags[orch.retrain_dag_id(family)]["params"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_retrain_dag_is_weekly_tagged_and_runs_one_at_a_time(dags: dict[str, Any], family: str) -> None:
    dag = dags[orch.retrain_dag_id(family)]
    assert dag["schedule"] == "0 3 * * 1"
    assert dag["tags"] == sorted(["ledgerline", "retrain", family])
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_retrain_reason_param_offers_exactly_the_pipeline_triggers_and_defaults_to_schedule(
    dags: dict[str, Any], family: str
) -> None:
    reason = dags[orch.retrain_dag_id(family)]["params"]["reason"]
    assert reason["value"] == "schedule"
    assert sorted(reason["schema"]["enum"]) == sorted(TRIGGERS)
    assert sorted(orch.REASONS) == sorted(TRIGGERS)


def test_monitoring_dag_is_daily_and_triggers_retraining_after_the_decisions(dags: dict[str, Any]) -> None:
    dag = dags[orch.MONITORING_DAG_ID]
    assert dag["schedule"] == "0 2 * * *"
    assert dag["tags"] == ["ledgerline", "monitoring"]
    assert dag["topological_order"] == ["served_models", "monitor", "plan_retrains", "trigger_retrain", "mark_acted"]
    tasks = dag["tasks"]
    assert tasks["monitor"]["mapped"] and tasks["trigger_retrain"]["mapped"]
    assert tasks["trigger_retrain"]["operator"] == "MappedOperator"
    assert tasks["trigger_retrain"]["upstream"] == ["plan_retrains"]
    assert tasks["mark_acted"]["upstream"] == ["plan_retrains", "trigger_retrain"]
    assert tasks["plan_retrains"]["trigger_rule"].endswith("ALL_DONE"), "a failed model must not block the others"
    assert tasks["mark_acted"]["trigger_rule"].endswith("NONE_FAILED")


def test_every_task_retries_with_a_delay(dags: dict[str, Any]) -> None:
    for dag_id, dag in dags.items():
        for task_id, task in dag["tasks"].items():
            assert task["retries"] == 2, f"{dag_id}.{task_id}"
            assert task["retry_delay_seconds"] == 300, f"{dag_id}.{task_id}"


# --------------------------------------------------------------------------- configuration, no Airflow


def test_run_conf_beats_variables_which_beat_defaults() -> None:
    variables = {"LEDGERLINE_MODEL_NAME__CREDIT_RISK": "credit-prod", "LEDGERLINE_RETRAIN_ROWS": "5000"}
    job = orch.retrain_job(
        "credit-risk", {"reason": "drift", "rows": 1200}, when="2026-03-02T02:00:00+00:00", dag_run="d/r",
        lookup=variables.get,
    )
    assert (job.model_name, job.rows, job.reason, job.snapshot_date) == ("credit-prod", 1200, "drift", "2026-03-02")
    default = orch.retrain_job("credit-risk", {}, when="2026-03-02", dag_run="d/r", lookup=lambda _: None)
    assert (default.model_name, default.rows, default.reason, default.data) == ("credit-risk", 20_000, "schedule", None)
    req = job.request()
    assert (req.trigger, req.logical_date, req.model_name) == ("drift", "2026-03-02", "credit-prod")


def test_max_chunks_comes_from_the_run_conf_then_the_environment_within_bounds() -> None:
    from ledgerline.errors import LedgerlineError

    def job(params: dict[str, Any], env: dict[str, str]) -> orch.RetrainJob:
        return orch.retrain_job("credit-risk", params, when="2026-03-02", dag_run="d/r", lookup=env.get)

    assert job({}, {}).max_chunks == orch.DEFAULT_MAX_CHUNKS == 16
    assert job({}, {"LEDGERLINE_MAX_CHUNKS": "24"}).max_chunks == 24
    assert job({"max_chunks": 4}, {"LEDGERLINE_MAX_CHUNKS": "24"}).max_chunks == 4
    for bad in (0, orch.MAX_CHUNKS_LIMIT + 1, "many"):
        with pytest.raises(LedgerlineError, match="max_chunks"):
            job({"max_chunks": bad}, {})


def test_an_unknown_reason_is_refused() -> None:
    from ledgerline.errors import LedgerlineError

    with pytest.raises(LedgerlineError, match="unknown retrain reason 'because'"):
        orch.retrain_job("credit-risk", {"reason": "because"}, when="2026-03-02", dag_run="d/r", lookup=lambda _: None)


def test_every_family_is_monitored_by_default_and_retrained_by_its_own_dag(dags: dict[str, Any]) -> None:
    defaults = orch.monitored_models(None)
    assert ("transaction-anomaly", "transaction-anomaly") in [(m.model_name, m.family) for m in defaults]
    assert "ledgerline_retrain_transaction_anomaly" in dags
    assert {orch.retrain_dag_id(m.family) for m in defaults} <= set(dags)
    parsed = orch.monitored_models("fraud-eu=transaction-anomaly")
    assert [(m.model_name, m.family) for m in parsed] == [("fraud-eu", "transaction-anomaly")]


def test_monitored_models_name_their_family() -> None:
    assert orch.monitored_models(None) == [orch.MonitoredModel(f, f) for f in FAMILIES]
    parsed = orch.monitored_models("credit-risk, credit-eu=credit-risk, credit-us", family_of={"credit-us": "credit-risk"}.get)
    assert [(m.model_name, m.family) for m in parsed] == [
        ("credit-risk", "credit-risk"), ("credit-eu", "credit-risk"), ("credit-us", "credit-risk")
    ]
    from ledgerline.errors import LedgerlineError

    with pytest.raises(LedgerlineError, match="write it as mystery=<family>"):
        orch.monitored_models("mystery")


def test_triggered_run_ids_are_deterministic_and_valid_airflow_run_ids() -> None:
    import re

    run_id = orch.triggered_run_id("drift", "credit risk/eu", 17)
    assert run_id == orch.triggered_run_id("drift", "credit risk/eu", 17)
    assert re.fullmatch(r"[A-Za-z0-9_.~:+-]+", run_id)


def test_schedules_come_from_the_environment() -> None:
    cfg = orch.dag_config({"LEDGERLINE_RETRAIN_SCHEDULE": "none", "LEDGERLINE_MONITOR_SCHEDULE": "30 1 * * *",
                           "LEDGERLINE_AIRFLOW_RETRIES": "4"})
    assert (cfg.retrain_schedule, cfg.monitor_schedule, cfg.retries) == (None, "30 1 * * *", 4)
    assert orch.dag_config({}).default_args()["retries"] == 2


BATCH_DAGS = {"ledgerline_batch_score", "ledgerline_batch_daily"}


def test_batch_dags_are_the_ones_the_api_triggers_and_only_the_daily_one_can_have_a_schedule(
    dags: dict[str, Any],
) -> None:
    from serving import batch_jobs

    assert {batch_jobs.BATCH_DAG_ID, batch_jobs.SCHEDULED_DAG_ID} == BATCH_DAGS
    one = dags[batch_jobs.BATCH_DAG_ID]
    assert list(one["tasks"]) == ["score"] and "*" not in one["schedule"] and "batch_id" in one["params"]
    assert one["tasks"]["score"]["retries"] >= 1  # a killed task resumes on its retry
    daily = dags[batch_jobs.SCHEDULED_DAG_ID]
    assert list(daily["tasks"]) == ["score_drop"] and "*" not in daily["schedule"]  # LEDGERLINE_BATCH_SCHEDULE unset


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_retrain_dag_takes_the_train_options_its_family_declares(dags: dict[str, Any], family: str) -> None:
    from training.family import get_family

    params = dags[orch.retrain_dag_id(family)]["params"]
    for option in get_family(family).train_options:
        assert option.dest in params and params[option.dest]["value"] is None, option.flag


def test_a_family_option_in_the_run_conf_reaches_the_train_request() -> None:
    job = orch.retrain_job("transaction-category", {"text_column": "memo"}, when="2026-03-02", dag_run="d/r",
                           lookup={}.get)
    assert dict(job.options) == {"text_column": "memo"}
