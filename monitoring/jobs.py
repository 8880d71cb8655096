"""The monitoring jobs and the retrain decision: what the monitoring DAG and ``ledgerline monitor`` call.

``run_monitoring`` resolves the ``@champion``, runs the drift job (reference = the
champion's training snapshot found through its MLflow dataset lineage, current =
the prediction log window) and the performance job (labelled predictions whose
label window has closed vs the champion's offline test metrics), logs each job's
evidence to an MLflow run in the monitoring experiment and a row to
``monitoring_results``, then decides, applies the cooldown and records the decision
in ``retrain_decisions``, where the retrain DAG picks it up with
``pending_retrain_decisions`` and claims it with ``mark_acted``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ledgerline.settings import Settings
from monitoring import store
from monitoring.decision import Decision, choose_reason, in_cooldown
from monitoring.settings import MonitoringSettings

if TYPE_CHECKING:
    from monitoring.data import Champion
    from monitoring.drift import DriftResult
    from monitoring.performance import PerformanceResult

logger = logging.getLogger(__name__)

__all__ = [
    "Decision",
    "JobOutcome",
    "mark_acted",
    "pending_retrain_decisions",
    "run_drift_job",
    "run_monitoring",
    "run_performance_job",
]


@dataclass(frozen=True)
class JobOutcome:
    """One job run: its result, window, MLflow run and ``monitoring_results`` row."""

    job: str  # drift | performance
    status: str  # ok | drift | degraded | insufficient_data
    result: DriftResult | PerformanceResult
    window_start: datetime
    window_end: datetime
    mlflow_run_id: str | None
    run_url: str | None
    result_id: int
    summary: dict[str, Any]  # what went to monitoring_results and the run's summary.json

    def evidence(self) -> dict[str, Any]:
        return {
            **self.summary,
            "window": {"start": self.window_start.isoformat(), "end": self.window_end.isoformat()},
            "mlflow_run_id": self.mlflow_run_id,
            "run_url": self.run_url,
            "monitoring_result_id": self.result_id,
        }


def _now(now: datetime | None) -> datetime:
    return store.utc(now) if now is not None else datetime.now(UTC)


# --- MLflow ----------------------------------------------------------------------


def _experiment_id(settings: Settings, name: str) -> str:
    from ledgerline.registry import ensure_experiment

    return ensure_experiment(settings, name, {"ledgerline.kind": "monitoring"})


def _log_run(
    settings: Settings,
    mon: MonitoringSettings,
    champion: Champion,
    *,
    job: str,
    status: str,
    window: tuple[datetime, datetime],
    metrics: dict[str, float],
    params: dict[str, Any],
    texts: dict[str, str],
) -> tuple[str, str]:
    """A FINISHED run in the monitoring experiment holding the job's metrics and files; (run id, URL)."""
    import math

    from mlflow.entities import Metric, Param

    from ledgerline.registry import client

    c = client(settings)
    exp_id = _experiment_id(settings, mon.experiment_name)
    run = c.create_run(
        exp_id,
        run_name=f"{job}-{champion.model_name}-v{champion.version}-{window[1]:%Y%m%dT%H%M}",
        tags={
            "ledgerline.model_name": champion.model_name,
            "ledgerline.model_version": champion.version,
            "ledgerline.monitoring.job": job,
            "ledgerline.monitoring.status": status,
            "ledgerline.champion_run_id": champion.run_id,
            "ledgerline.reference_uri": champion.snapshot_uri,
        },
    )
    run_id = run.info.run_id
    try:
        ts = int(time.time() * 1000)
        c.log_batch(
            run_id,
            metrics=[Metric(k[:250], float(v), ts, 0) for k, v in metrics.items() if v is not None and math.isfinite(v)],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        )
        for path, text in texts.items():
            c.log_text(run_id, text, path)
        c.set_terminated(run_id, "FINISHED")
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise
    return run_id, f"{settings.tracking_uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"


# --- jobs --------------------------------------------------------------------------


def run_drift_job(
    settings: Settings,
    model_name: str,
    *,
    now: datetime | None = None,
    mon: MonitoringSettings | None = None,
    champion: Champion | None = None,
) -> JobOutcome:
    """Drift of the prediction log window against the champion's training snapshot; logged and recorded."""
    from monitoring import data
    from monitoring.drift import compute_drift, not_enough_data

    now = _now(now)
    mon = mon or MonitoringSettings()  # from the environment
    champion = champion or data.resolve_champion(settings, model_name)
    numeric, categorical = champion.monitoring.monitored_columns(champion.spec)
    url = settings.resolved_app_db_url()
    start, end = now - timedelta(days=mon.window_days), now
    version = champion.version if mon.current_version_only else None

    t0 = time.perf_counter()
    current = data.load_prediction_window(url, model_name, version, start, end, numeric=numeric, categorical=categorical)
    load_current_s = time.perf_counter() - t0
    reference_cached = False
    if len(current) < mon.min_current_rows:
        result = not_enough_data(len(current), mon)
        others = {v: n for v, n in data.count_by_version(url, model_name, start, end).items() if v != champion.version}
        if version is not None and others:
            result = _with_message(
                result,
                f"{result.message}; predictions of other versions in the window were not counted: "
                + ", ".join(f"v{v}: {n}" for v, n in sorted(others.items())),
            )
    else:
        reference_cached = data.reference_cache_path(settings, champion).exists()
        t0 = time.perf_counter()
        reference, reference_scores = data.load_reference(settings, champion)
        load_reference_s = time.perf_counter() - t0
        result = compute_drift(
            reference[[*numeric, *categorical]],
            current,
            numeric=numeric,
            categorical=categorical,
            mon=mon,
            reference_scores=reference_scores,
            current_scores=current[data.SCORE_COLUMN].to_numpy(),
        )
        result.timings.update({"load_current": load_current_s, "load_reference": load_reference_s})
    summary = result.summary()
    summary["reference"] = {
        "uri": champion.snapshot_uri,
        "lineage": champion.lineage,
        "run_id": champion.run_id,
        "cached": reference_cached,
    }
    if current.attrs.get("junk"):
        summary["non_numeric_inputs"] = current.attrs["junk"]

    metrics: dict[str, float] = {"current_rows": float(result.current_rows), "reference_rows": float(result.reference_rows)}
    texts = {"drift/summary.json": json.dumps(store.jsonable(summary), indent=2)}
    if result.status != "insufficient_data":
        metrics.update({f"psi_{f.name}": f.psi for f in result.features})
        metrics["drifted_features"] = float(len(result.drifted_features))
        if result.score is not None:
            metrics["psi_score"] = result.score.psi
        if result.evidently is not None:
            metrics["evidently_drifted_share"] = result.evidently.drifted_share
            texts["drift/report.html"] = result.evidently.html
            texts["drift/evidently.json"] = result.evidently.report_json
    run_id, run_url = _log_run(
        settings,
        mon,
        champion,
        job="drift",
        status=result.status,
        window=(start, end),
        metrics=metrics,
        params={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "psi_bands": f"{mon.psi_moderate}/{mon.psi_significant}",
            "psi_drift_band": mon.psi_drift_band,
            "drift_share": mon.drift_share,
            "min_current_rows": mon.min_current_rows,
            "evidently_sample_size": mon.evidently_sample_size,
        },
        texts=texts,
    )
    result_id = store.record_result(
        url,
        model_name=model_name,
        model_version=champion.version,
        job="drift",
        window_start=start,
        window_end=end,
        status=result.status,
        summary=summary,
        mlflow_run_id=run_id,
        created_at=now,
    )
    logger.info("drift job %s v%s: %s (run %s)", model_name, champion.version, result.message, run_id)
    return JobOutcome("drift", result.status, result, start, end, run_id, run_url, result_id, summary)


def _with_message(result: DriftResult, message: str) -> DriftResult:
    from dataclasses import replace

    return replace(result, message=message)


def run_performance_job(
    settings: Settings,
    model_name: str,
    *,
    now: datetime | None = None,
    mon: MonitoringSettings | None = None,
    champion: Champion | None = None,
) -> JobOutcome:
    """Live metrics on labelled predictions whose label window has closed, vs the champion's offline test metrics."""
    from monitoring import data
    from monitoring.performance import evaluate_performance, evaluate_window, label_window, with_window

    now = _now(now)
    mon = mon or MonitoringSettings()  # from the environment
    champion = champion or data.resolve_champion(settings, model_name)
    family = champion.monitoring
    url = settings.resolved_app_db_url()
    start, end = label_window(now, mon)
    version = champion.version if mon.current_version_only else None
    labelled = data.load_labelled_window(
        url,
        model_name,
        version,
        start,
        end,
        labels_until=now,
        codec=champion.label_codec,
        output_fields=family.output_fields,
    )
    result = evaluate_performance(
        labelled.y,
        labelled.p,
        champion.offline_metrics,
        mon,
        family=family,
        outputs=labelled.outputs,
        predictions=labelled.predictions,
    )
    window_params: dict[str, Any] = {}
    if family.window_rules(mon):  # label-free checks run on the recent window (no label delay)
        w_start, w_end = now - timedelta(days=mon.window_days), now
        # a family whose window checks read feedback (e.g. a correction rate) sees each prediction's feedback so far
        labels_until = now if family.window_labels else None
        scores, outputs = data.load_window_outputs(url, model_name, version, w_start, w_end, family.output_fields,
                                                   labels_until=labels_until)
        check = evaluate_window(scores, outputs, champion.offline_metrics, mon, family=family)
        result = with_window(result, check)
        window_params = {"check_window_start": w_start.isoformat(), "check_window_end": w_end.isoformat()}
    summary = result.summary()
    if "window_check" in summary:  # its own window: the recent predictions, not the labelled ones
        summary["window_check"].update(
            {"start": window_params["check_window_start"], "end": window_params["check_window_end"]}
        )
    if labelled.undecodable:
        summary["undecodable_labels"] = labelled.undecodable
    metrics = {"labelled_rows": float(result.labelled), "predictions": float(result.predictions)}
    metrics.update({f"live_{k}": v for k, v in result.metrics.items()})
    metrics.update({f"offline_{k}": v for k, v in result.baseline.items()})
    metrics.update({f"delta_{k}": v for k, v in result.deltas.items()})
    if result.window is not None:
        metrics.update({f"window_{k}": v for k, v in result.window.metrics.items()})
    run_id, run_url = _log_run(
        settings,
        mon,
        champion,
        job="performance",
        status=result.status,
        window=(start, end),
        metrics=metrics,
        params={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "label_window_days": mon.label_window_days,
            "family": family.name,
            **{f"{r.metric}_tolerance": r.tolerance for r in family.performance_rules(mon)},
            "min_labelled_rows": mon.min_labelled_rows,
            **window_params,
        },
        texts={"performance/summary.json": json.dumps(store.jsonable(summary), indent=2)},
    )
    result_id = store.record_result(
        url,
        model_name=model_name,
        model_version=champion.version,
        job="performance",
        window_start=start,
        window_end=end,
        status=result.status,
        summary=summary,
        mlflow_run_id=run_id,
        created_at=now,
    )
    logger.info("performance job %s v%s: %s (run %s)", model_name, champion.version, result.message, run_id)
    return JobOutcome("performance", result.status, result, start, end, run_id, run_url, result_id, summary)


# --- the decision --------------------------------------------------------------------


def run_monitoring(
    settings: Settings,
    model_name: str,
    *,
    now: datetime | None = None,
    mon: MonitoringSettings | None = None,
    expected_family: str | None = None,
) -> Decision:
    """Run both jobs for ``model_name``'s champion, decide, apply the cooldown, record and return the decision.

    ``expected_family`` (the monitoring DAG's configuration): a champion of another family is an
    error, since its retrain decision would start the wrong family's retrain DAG.
    """
    from ledgerline.errors import LedgerlineError
    from monitoring import data

    now = _now(now)
    mon = mon or MonitoringSettings()  # from the environment
    champion = data.resolve_champion(settings, model_name)
    if expected_family is not None and champion.family != expected_family:
        raise LedgerlineError(
            f"{model_name} v{champion.version} is a '{champion.family}' model, but it is monitored as "
            f"'{expected_family}'; fix LEDGERLINE_MONITORED_MODELS ({model_name}={champion.family}) or the version's "
            f"ledgerline.family tag"
        )
    family = champion.monitoring
    # feedback per series and date (not per logged prediction): no row inputs to drift on
    drift = None if family.series_feedback else run_drift_job(settings, model_name, now=now, mon=mon, champion=champion)
    performance = family.performance_job(settings, model_name, now=now, mon=mon, champion=champion)
    if performance is None:
        if family.series_feedback:
            raise LedgerlineError(
                f"the monitoring plug-in of '{family.name}' says its feedback is per series (series_feedback) but its "
                "performance_job returned nothing; implement performance_job in its monitor.py"
            )
        performance = run_performance_job(settings, model_name, now=now, mon=mon, champion=champion)

    age_days = (now - champion.created_at).total_seconds() / 86400 if champion.created_at else None
    url = settings.resolved_app_db_url()
    new_labels = None
    since = champion.labels_new_since  # the end of its training window, else when it was registered
    if mon.retrain_after_labels is not None and since is not None:
        new_labels = family.new_labels(url, model_name, since, now)
    reason = choose_reason(drift.status if drift else None, performance.status, champion_age_days=age_days,
                           max_age_days=mon.max_champion_age_days, new_labels=new_labels,
                           retrain_after_labels=mon.retrain_after_labels)
    evidence: dict[str, Any] = {
        "drift": drift.evidence() if drift else {"status": "not measured (feedback per series: no row inputs)"},
        "performance": performance.evidence(),
        "champion": {"version": champion.version, "run_id": champion.run_id, "reference_uri": champion.snapshot_uri},
    }
    if mon.retrain_after_labels is not None:
        evidence["feedback"] = {
            "new_labels": new_labels,
            "retrain_after_labels": mon.retrain_after_labels,
            "champion_version": champion.version,
            "since": since.isoformat() if since else None,
        }
    if mon.max_champion_age_days is not None:
        evidence["schedule"] = {
            "champion_age_days": None if age_days is None else round(age_days, 2),
            "max_champion_age_days": mon.max_champion_age_days,
        }
    with store.decision_lock(url, model_name) as conn:
        last = store.last_retrain(conn, model_name, now)
        suppressed = reason is not None and in_cooldown(last[1] if last else None, now, mon.cooldown_days)
        if suppressed and last is not None:
            evidence["cooldown"] = {
                "last_retrain_decision_id": last[0],
                "last_retrain_at": last[1].isoformat(),
                "cooldown_days": mon.cooldown_days,
                "until": (last[1] + timedelta(days=mon.cooldown_days)).isoformat(),
            }
        decision = store.insert_decision(
            conn,
            model_name=model_name,
            model_version=champion.version,
            retrain=reason is not None and not suppressed,
            reason=reason,
            suppressed=suppressed,
            evidence=evidence,
            decided_at=now,
        )
    from ledgerline.registry import client

    c = client(settings)
    for outcome in (drift, performance):
        if outcome is not None and outcome.mlflow_run_id:
            c.set_tag(outcome.mlflow_run_id, "ledgerline.monitoring.decision_id", str(decision.decision_id))
    logger.info("%s", decision.summary())
    return decision


def pending_retrain_decisions(settings: Settings, model_name: str) -> list[Decision]:
    """Retrain decisions of ``model_name`` that no DAG run has acted on yet, oldest first."""
    return store.pending(settings.resolved_app_db_url(), model_name)


def mark_acted(settings: Settings, decision_id: int, dag_run_id: str) -> None:
    """Record that ``dag_run_id`` acted on the decision. Idempotent: the first DAG run to claim it
    keeps it; repeating the call with the same id is a no-op, another id leaves it unchanged (and
    logs a warning). Unknown or non-retrain decisions raise ``LedgerlineError``."""
    from ledgerline.errors import LedgerlineError

    try:
        key = int(decision_id)  # a DAG run's conf may carry it as text
    except (TypeError, ValueError) as exc:
        raise LedgerlineError(f"decision id {decision_id!r} is not a number; pass Decision.decision_id") from exc
    store.mark_acted(settings.resolved_app_db_url(), key, dag_run_id)
