"""Daily monitoring of every served model; a "retrain" decision triggers that family's retrain DAG.

served_models -> monitor (mapped: drift + performance jobs, one decision per model) ->
plan_retrains (decisions still waiting for a retrain) -> trigger_retrain (mapped
TriggerDagRunOperator: ``ledgerline_retrain_<family>`` with conf ``reason``, ``model_name``,
``decision_id``; its logical date is the decision's, so the retrain reads the data as of the
monitoring run's date, also for a backfilled one) -> mark_acted (the decision records the DAG run that acts on it).

The triggered run id is derived from the decision id, so a retried or repeated trigger
finds the run it already created instead of starting a second one; the 3-day cooldown
is the monitoring package's (a suppressed decision never asks for a retrain). A model
that cannot be monitored fails the run but does not hold back the other models' retrains.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

from apps.orchestration import MONITORING_DAG_ID, dag_config, timetable

CONFIG = dag_config()


@dag(
    dag_id=MONITORING_DAG_ID,
    description="Drift and performance checks for every served model; triggers retraining",
    schedule=timetable(CONFIG.monitor_schedule),  # the first run is the next slot, never a past one
    catchup=False,
    max_active_runs=1,
    default_args={**CONFIG.default_args(), "execution_timeout": timedelta(hours=1)},
    tags=["ledgerline", "monitoring"],
    doc_md=__doc__,
)
def ledgerline_monitoring() -> None:
    @task
    def served_models() -> list[dict[str, str]]:
        from apps import orchestration as orch

        with orch.fail_fast():
            return orch.monitored_from_airflow(orch.airflow_settings())

    @task
    def monitor(model: dict[str, str]) -> dict[str, Any]:
        from apps import orchestration as orch

        with orch.fail_fast():
            return orch.monitor(orch.airflow_settings(), model, orch.current_run().when)

    @task(trigger_rule="all_done")  # one model failing to monitor must not hold back the others' retrains
    def plan_retrains(models: list[dict[str, str]], decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from apps import orchestration as orch

        with orch.fail_fast():
            return orch.retrain_plan(orch.airflow_settings(), models)

    @task(trigger_rule="none_failed")  # runs when nothing was triggered (trigger_retrain skipped) too
    def mark_acted(plan: list[dict[str, Any]]) -> list[str]:
        from apps import orchestration as orch

        with orch.fail_fast():
            return orch.mark_triggered(orch.airflow_settings(), plan)

    models = served_models()
    plan = plan_retrains(models, monitor.expand(model=models))
    trigger = TriggerDagRunOperator.partial(
        task_id="trigger_retrain",
        skip_when_already_exists=True,
    ).expand_kwargs(plan)
    trigger >> mark_acted(plan)


ledgerline_monitoring()
