"""What the Airflow DAGs call: one function per task, plus where their configuration comes from.

The DAG files in ``dags/`` are wiring only; every task body is a few lines calling this
module. Functions taking ``Settings`` and a :class:`RetrainJob` are plain Python (tests call
them without Airflow); the few helpers that read Airflow's task context or Variables
import Airflow lazily, inside the function.

Configuration (nothing is hard-coded in the DAG files)
    Run conf / params (per run)    ``reason`` (schedule | drift | performance | manual, default
                                   ``schedule``), ``model_name``, ``rows``, ``seed``, ``data_path``,
                                   ``spec_path``, ``target``, ``positive_label``, ``decision_id``
    Airflow Variable, else env     ``ledgerline_settings`` (JSON object of :class:`Settings` fields,
                                   overlaying the ``LEDGERLINE_*`` / ``MLFLOW_TRACKING_URI`` env),
                                   and, looked up as Variable ``<name lower-cased>`` then env ``<NAME>``:
        LEDGERLINE_MONITORED_MODELS        served models the monitoring DAG checks: ``name[=family]``,
                                           comma-separated (default: one model per family, named
                                           like the family)
        LEDGERLINE_MODEL_NAME__<FAMILY>    registered model the family's retrain DAG trains
                                           (default: the family name), e.g. ``..._CREDIT_RISK``
        LEDGERLINE_DATA__<FAMILY>          CSV/Parquet file to train on (default: the generator)
        LEDGERLINE_SPEC__<FAMILY>          dataset spec YAML for that file
        LEDGERLINE_TARGET__<FAMILY>, LEDGERLINE_POSITIVE_LABEL__<FAMILY>   when there is no spec
        LEDGERLINE_RETRAIN_ROWS            generator rows (default 20000)
        LEDGERLINE_MAX_CHUNKS              chunks a chunked family's training is mapped over
                                           (default 16; run conf ``max_chunks`` overrides)
    Environment only (read when the DAG file is parsed, so no database call at parse time)
        LEDGERLINE_RETRAIN_SCHEDULE        cron of the retrain DAGs (default ``0 3 * * 1``, Mondays;
                                           ``none``: triggered runs only)
        LEDGERLINE_MONITOR_SCHEDULE        cron of the monitoring DAG (default ``0 2 * * *``, daily)
        LEDGERLINE_AIRFLOW_RETRIES         retries of every task (default 2)
        LEDGERLINE_AIRFLOW_RETRY_DELAY_SECONDS   first retry delay, doubled each time (default 300)

Retries and idempotency of a retrain run (keyed on the DAG run and its snapshot)
    ingest    the snapshot is immutable per model and date: a retry re-writes nothing.
    validate  the MLflow run is created tagged with the DAG run id; a retry reuses a run of the
              same DAG run and snapshot digest whose validation passed, otherwise opens a new run
              (attempts that died half-way are marked FAILED). Failed validation is final: the
              task fails without retries (the snapshot cannot change) and nothing is trained.
    train     a retry first looks for a registered version of that MLflow run and returns it,
              so one DAG run never registers two versions.
    (families in ``CHUNKED_TRAINING`` train in three steps instead of ``train``)
    plan_chunks   the series of each chunk, written once per MLflow run (a retry reads them back).
    train_chunk   one mapped task per chunk; writes its part atomically under the data dir, keyed
                  by the MLflow run and chunk index. A retry (its worker was killed) trains that
                  chunk alone; a part already written is not trained again.
    gather        like ``train``: returns the version already registered from the run, else
                  gathers the parts into one model and registers it.
    gate      writes nothing; a retry re-scores.
    promote   a retry finds the ledger row of the version and returns it instead of writing a
              second one; if the champion moved since the gate ran, it re-gates first.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ledgerline import lineage
from ledgerline.errors import LedgerlineError
from ledgerline.names import check_model_name
from ledgerline.settings import Settings

if TYPE_CHECKING:
    from training.gate import GateDecision
    from training.pipeline import TrainRequest

logger = logging.getLogger(__name__)

RETRAIN_DAG_PREFIX = "ledgerline_retrain_"
MONITORING_DAG_ID = "ledgerline_monitoring"
SETTINGS_VARIABLE = "ledgerline_settings"
DEFAULT_REASON = "schedule"
#: training.pipeline.TRIGGERS, repeated here so DAG files can offer them without importing pandas
#: (tests/dags checks the two agree).
REASONS = ("schedule", "drift", "performance", "manual")
DEFAULT_ROWS = 20_000
DEFAULT_MAX_CHUNKS = 16
MAX_CHUNKS_LIMIT = 256  # a mapped task per chunk: tens of tasks, never one per series
RUN_TAG = lineage.AIRFLOW_RUN  # "<dag_id>/<run_id>" on the MLflow run
DECISION_TAG = lineage.AIRFLOW_DECISION_ID
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+-]+")  # Airflow's default allowed_run_id_pattern

Lookup = Callable[[str], str | None]


# --------------------------------------------------------------------------- names


def family_slug(family: str) -> str:
    """``my-model`` -> ``my_model`` (DAG ids, env var suffixes)."""
    return re.sub(r"[^a-z0-9]+", "_", family.lower()).strip("_")


def retrain_dag_id(family: str) -> str:
    return f"{RETRAIN_DAG_PREFIX}{family_slug(family)}"


def family_key(name: str, family: str) -> str:
    """The per-family setting name, e.g. ``family_key("LEDGERLINE_DATA", "my-family")`` -> ``LEDGERLINE_DATA__MY_FAMILY``."""
    return f"{name}__{family_slug(family).upper()}"


def triggered_run_id(reason: str, model_name: str, decision_id: object) -> str:
    """A deterministic DAG run id per monitoring decision: triggering twice finds the first run."""
    raw = f"{reason}__{model_name[:100]}__{decision_id}"
    return _RUN_ID_UNSAFE.sub("-", raw)[:240]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DagConfig:
    """What the DAG files need while being parsed; environment only (no Variable, no database)."""

    retrain_schedule: str | None = "0 3 * * 1"  # None: only triggered runs
    monitor_schedule: str | None = "0 2 * * *"
    retries: int = 2
    retry_delay: timedelta = timedelta(minutes=5)

    def default_args(self) -> dict[str, Any]:
        return {
            "owner": "ledgerline",
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "retry_exponential_backoff": True,
            "max_retry_delay": max(self.retry_delay * 8, self.retry_delay),
        }


def _schedule(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in ("", "none", "manual", "off") else value.strip()


def dag_config(environ: Mapping[str, str] | None = None) -> DagConfig:
    """``LEDGERLINE_*_SCHEDULE`` take a cron expression or ``none`` (triggered runs only)."""
    env = os.environ if environ is None else environ
    try:
        return DagConfig(
            retrain_schedule=_schedule(env.get("LEDGERLINE_RETRAIN_SCHEDULE", DagConfig.retrain_schedule)),
            monitor_schedule=_schedule(env.get("LEDGERLINE_MONITOR_SCHEDULE", DagConfig.monitor_schedule)),
            retries=int(env.get("LEDGERLINE_AIRFLOW_RETRIES", DagConfig.retries)),
            retry_delay=timedelta(seconds=float(env.get("LEDGERLINE_AIRFLOW_RETRY_DELAY_SECONDS", 300))),
        )
    except ValueError as exc:
        raise LedgerlineError(f"bad Airflow setting in the environment: {exc}") from exc


def timetable(expression: str | None) -> Any:
    """The schedule for a DAG: ``expression`` as a cron trigger that never runs a past slot on start.

    Airflow 3.3's ``CronTriggerTimetable`` treats ``run_immediately=False`` (also what a plain
    cron string gets) like ``None``: a DAG seen for the first time runs the most recent slot when
    it is within 10% of the period, so a fresh ``make demo`` on a Monday retrained at once. A zero
    buffer makes the first run the next slot in the future. ``None``: triggered runs only.
    """
    if expression is None:
        return None
    from airflow.sdk import CronTriggerTimetable

    return CronTriggerTimetable(expression, timezone="UTC", run_immediately=timedelta(0))


def env_lookup(name: str) -> str | None:
    return os.environ.get(name) or None


def settings_from(overlay: Mapping[str, Any] | str | None) -> Settings:
    """``Settings()`` from the environment, with ``overlay`` (a dict or JSON object) on top."""
    if isinstance(overlay, str):
        try:
            overlay = json.loads(overlay) if overlay.strip() else None
        except json.JSONDecodeError as exc:
            raise LedgerlineError(f"Airflow Variable {SETTINGS_VARIABLE} is not JSON: {exc}") from exc
    if overlay is not None and not isinstance(overlay, Mapping):
        raise LedgerlineError(f"Airflow Variable {SETTINGS_VARIABLE} must be a JSON object of settings fields")
    return Settings(**dict(overlay or {}))


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``LEDGERLINE_*`` environment an Airflow process needs to rebuild them.

    Locations are resolved (absolute app DB URL, data dir, home) so a process with another
    working directory points at the same files.
    """
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        # nested models and lists as JSON, which pydantic-settings parses back
        env[f"LEDGERLINE_{name.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    env["LEDGERLINE_HOME"] = str(settings.home.resolve())
    env["LEDGERLINE_APP_DB_URL"] = settings.resolved_app_db_url()
    env["LEDGERLINE_DATA_DIR"] = str(settings.resolved_data_dir())
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    return env


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    return None


# --------------------------------------------------------------------------- retraining


@dataclass(frozen=True)
class RetrainJob:
    """One retrain DAG run, resolved from its params, Variables and environment."""

    family: str
    model_name: str
    reason: str
    snapshot_date: str  # YYYY-MM-DD: the run's logical date (or, without one, the day it ran)
    dag_run: str  # "<dag_id>/<run_id>": the idempotency key of the tasks
    rows: int = DEFAULT_ROWS
    seed: int | None = None
    data: str | None = None
    spec_path: str | None = None
    target: str | None = None
    positive_label: str | None = None
    decision_id: str | None = None
    max_chunks: int = DEFAULT_MAX_CHUNKS
    #: the family's own train options from the params (dest -> value, e.g. ("text_column", "memo"))
    options: tuple[tuple[str, Any], ...] = ()

    def request(self) -> TrainRequest:
        from training.requests import train_request

        return train_request(
            self.family,
            model_name=self.model_name,
            data=self.data or None,
            spec_path=self.spec_path or None,
            target=self.target,
            positive_label=self.positive_label,
            logical_date=self.snapshot_date,
            trigger=self.reason,
            rows=self.rows,
            seed=self.seed,
            options=dict(self.options),
        )

    def run_tags(self) -> dict[str, str]:
        tags = {RUN_TAG: self.dag_run}
        if self.decision_id:
            tags[DECISION_TAG] = self.decision_id
        return tags


def retrain_job(
    family: str,
    params: Mapping[str, Any],
    *,
    when: datetime | str,
    dag_run: str,
    lookup: Lookup = env_lookup,
) -> RetrainJob:
    """Resolve a retrain run: params/run conf first, then Variables/env (``lookup``), then defaults."""
    from ledgerline.families import FAMILIES
    from training.pipeline import TRIGGERS

    if family not in FAMILIES:
        raise LedgerlineError(f"unknown model family '{family}'; known families: {sorted(FAMILIES)}")
    reason = str(params.get("reason") or DEFAULT_REASON)
    if reason not in TRIGGERS:
        raise LedgerlineError(f"unknown retrain reason '{reason}'; use one of {list(TRIGGERS)}")
    rows = _first(params.get("rows"), lookup("LEDGERLINE_RETRAIN_ROWS"), DEFAULT_ROWS)
    seed = params.get("seed")
    max_chunks = _first(params.get("max_chunks"), lookup("LEDGERLINE_MAX_CHUNKS"), DEFAULT_MAX_CHUNKS)
    try:
        rows, seed = int(rows), (int(seed) if seed is not None and seed != "" else None)
        max_chunks = int(max_chunks)
    except (TypeError, ValueError) as exc:
        raise LedgerlineError(f"rows, seed and max_chunks must be integers: {exc}") from exc
    if not 1 <= max_chunks <= MAX_CHUNKS_LIMIT:
        raise LedgerlineError(f"max_chunks is {max_chunks}; use 1 to {MAX_CHUNKS_LIMIT} (each chunk is one task)")
    snapshot_date = when[:10] if isinstance(when, str) else when.date().isoformat()
    decision_id = params.get("decision_id")
    # the name becomes folders under the data dir and a registry key: refuse '../x' before any work
    model_name = check_model_name(_first(params.get("model_name"), lookup(family_key("LEDGERLINE_MODEL_NAME", family)), family))
    return RetrainJob(
        family=family,
        model_name=model_name,
        reason=reason,
        snapshot_date=snapshot_date,
        dag_run=dag_run,
        rows=rows,
        seed=seed,
        data=_first(params.get("data_path"), lookup(family_key("LEDGERLINE_DATA", family))),
        spec_path=_first(params.get("spec_path"), lookup(family_key("LEDGERLINE_SPEC", family))),
        target=_first(params.get("target"), lookup(family_key("LEDGERLINE_TARGET", family))),
        positive_label=_first(params.get("positive_label"), lookup(family_key("LEDGERLINE_POSITIVE_LABEL", family))),
        decision_id=str(decision_id) if decision_id not in (None, "") else None,
        max_chunks=max_chunks,
        options=tuple((dest, params[dest]) for dest in _option_dests(family) if params.get(dest) not in (None, "", False)),
    )


def _option_dests(family: str) -> list[str]:
    """The params naming the family's own train options (``ledgerline train``'s flags as names: text_column, freq)."""
    from training.family import get_family

    return [o.dest for o in get_family(family).train_options]


def ingest(settings: Settings, job: RetrainJob) -> str:
    """Write (or find) the immutable snapshot for the run's date; return its URI."""
    from training.pipeline import prepare

    prepared = prepare(settings, job.request())
    logger.info("snapshot %s (%d rows, reason=%s)", prepared.snapshot.uri, prepared.snapshot.rows, job.reason)
    return prepared.snapshot.uri


def _runs_of(settings: Settings, job: RetrainJob, digest: str) -> list[Any]:
    from ledgerline.registry import client

    c = client(settings)
    exp = c.get_experiment_by_name(settings.experiment_name(job.model_name))
    if exp is None:
        return []
    query = f"tags.`{RUN_TAG}` = '{job.dag_run}' and tags.`ledgerline.snapshot_digest` = '{digest}'"
    return list(c.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"]))


def validate(settings: Settings, job: RetrainJob, snapshot_uri: str) -> str:
    """The GX gate; return the MLflow run id (reusing this DAG run's validated run on a retry)."""
    from ledgerline.registry import client
    from training import pipeline

    req = job.request()
    prepared = pipeline.prepared_from_uri(settings, req, snapshot_uri)
    c = client(settings)
    for run in _runs_of(settings, job, prepared.snapshot.digest):
        if run.data.tags.get(lineage.VALIDATION) == "passed":
            logger.info("reusing MLflow run %s: this DAG run already validated %s", run.info.run_id, snapshot_uri)
            return str(run.info.run_id)
        if run.info.status == "RUNNING":  # an attempt that died half-way
            c.set_terminated(run.info.run_id, "FAILED")
    return pipeline.validate(settings, req, prepared, extra_tags=job.run_tags())


def registered_version(settings: Settings, model_name: str, run_id: str) -> str | None:
    """The version of ``model_name`` registered from MLflow run ``run_id``, if any."""
    from mlflow.exceptions import MlflowException

    from ledgerline.registry import client

    try:
        versions = client(settings).search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return str(max(int(v.version) for v in versions)) if versions else None


def train(settings: Settings, job: RetrainJob, snapshot_uri: str, run_id: str) -> str:
    """Train and register in the validated run; a retry returns the version already registered."""
    from training import pipeline

    existing = registered_version(settings, job.model_name, run_id)
    if existing is not None:
        logger.info("%s v%s is already registered from run %s; not training again", job.model_name, existing, run_id)
        return existing
    prepared = pipeline.prepared_from_uri(settings, job.request(), snapshot_uri)
    version, metrics = pipeline.train_and_register(settings, job.request(), prepared, run_id)
    logger.info("registered %s v%s: %s", job.model_name, version, metrics)
    return version


def trains_in_chunks(family: str) -> bool:
    """Whether the family's retrain DAG maps over chunks (read at parse time: no plug-in import)."""
    from ledgerline.families import CHUNKED_TRAINING

    return family in CHUNKED_TRAINING


def plan_chunks(settings: Settings, job: RetrainJob, snapshot_uri: str, run_id: str) -> list[int]:
    """The chunk indices the DAG maps ``train_chunk`` over (the plan is written once per MLflow run)."""
    from training import pipeline

    prepared = pipeline.prepared_from_uri(settings, job.request(), snapshot_uri)
    plan = pipeline.plan_chunks(settings, job.request(), prepared, run_id, job.max_chunks)
    logger.info("%s: %d chunks of %s series", job.model_name, len(plan.chunks), [len(c) for c in plan.chunks])
    return list(range(len(plan.chunks)))


def train_chunk(
    settings: Settings, job: RetrainJob, snapshot_uri: str, run_id: str, index: int, *, attempt: int = 1
) -> dict[str, Any]:
    """Train one chunk and write its part; nothing to do when the part or the version exists already."""
    from training import pipeline

    existing = registered_version(settings, job.model_name, run_id)
    if existing is not None:
        logger.info("%s v%s is already registered from run %s; chunk %d has nothing to do",
                    job.model_name, existing, run_id, index)
        return {"chunk": index, "trained": False, "version": existing}
    prepared = pipeline.prepared_from_uri(settings, job.request(), snapshot_uri)
    result = pipeline.train_chunk(settings, job.request(), prepared, run_id, index, attempt=attempt)
    return {"chunk": index, "trained": result.trained, "series": result.series}


def gather(settings: Settings, job: RetrainJob, snapshot_uri: str, run_id: str) -> str:
    """Gather the chunks into one registered version; a retry returns the version already registered."""
    from training import pipeline

    existing = registered_version(settings, job.model_name, run_id)
    if existing is not None:
        logger.info("%s v%s is already registered from run %s; not gathering again", job.model_name, existing, run_id)
        pipeline.discard_chunk_parts(settings, job.model_name, run_id)
        return existing
    prepared = pipeline.prepared_from_uri(settings, job.request(), snapshot_uri)
    version, metrics = pipeline.gather_and_register(settings, job.request(), prepared, run_id)
    logger.info("registered %s v%s gathered from its chunks: %s", job.model_name, version, metrics)
    return version


def _gated_row(settings: Settings, model_name: str, version: str) -> dict[str, Any] | None:
    from ledgerline import db

    rows = [
        r
        for r in db.ledger(settings.resolved_app_db_url(), model_name)
        if r["version"] == str(version) and r["action"] in ("promote", "reject")
    ]
    return rows[-1] if rows else None


def decision_to_dict(decision: GateDecision) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(decision), default=float))


def decision_from_dict(data: Mapping[str, Any]) -> GateDecision:
    from training.gate import GateDecision

    fields = GateDecision.__dataclass_fields__
    return GateDecision(**{k: v for k, v in data.items() if k in fields})


def gate(settings: Settings, job: RetrainJob, version: str) -> dict[str, Any]:
    """Challenger vs champion on the challenger's holdout; writes nothing. Returns the decision."""
    from training.pipeline import evaluate_gate

    decision = evaluate_gate(settings, job.model_name, version)
    logger.info("gate for %s v%s: %s (%s)", job.model_name, version,
                "pass" if decision.passed else "fail", "; ".join(decision.reasons))
    return decision_to_dict(decision)


def promote(
    settings: Settings, job: RetrainJob, version: str, run_id: str, decision: Mapping[str, Any]
) -> dict[str, Any]:
    """Act on the gate decision (alias, registry tags, ledger row with the reason); once per version."""
    from ledgerline.registry import CHAMPION, alias_version, client
    from training.pipeline import evaluate_gate, record_gate

    done = _gated_row(settings, job.model_name, version)
    if done is not None:
        logger.info("%s v%s was already gated (ledger row %s); not recording again", job.model_name, version, done["id"])
        return {"version": str(version), "passed": bool(done["passed"]), "champion": done["champion_after"],
                "trigger": done["trigger"]}
    gate_decision = decision_from_dict(decision)
    current = alias_version(client(settings), job.model_name, CHAMPION)
    if current not in (gate_decision.champion_version, str(version)):
        logger.warning("@champion of %s moved to v%s after the gate compared with v%s; gating again",
                       job.model_name, current, gate_decision.champion_version)
        gate_decision = evaluate_gate(settings, job.model_name, version)
    champion = record_gate(settings, job.model_name, version, gate_decision, trigger=job.reason, run_id=run_id)
    return {"version": str(version), "passed": gate_decision.passed, "champion": champion, "trigger": job.reason}


# --------------------------------------------------------------------------- monitoring


@dataclass(frozen=True)
class MonitoredModel:
    model_name: str
    family: str

    def as_dict(self) -> dict[str, str]:
        return {"model_name": self.model_name, "family": self.family}


def monitored_models(raw: str | None, *, family_of: Callable[[str], str | None] | None = None) -> list[MonitoredModel]:
    """Parse ``name[=family], ...``; without a family, the name itself or ``family_of(name)`` must give one."""
    from ledgerline.families import FAMILIES

    if not raw or not raw.strip():
        return [MonitoredModel(f, f) for f in FAMILIES]
    out: list[MonitoredModel] = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        name, _, family = (s.strip() for s in item.partition("="))
        family = family or (name if name in FAMILIES else (family_of(name) if family_of else None)) or ""
        if family not in FAMILIES:
            raise LedgerlineError(
                f"monitored model '{name}': unknown family '{family or '?'}'; "
                f"write it as {name}=<family> with one of {sorted(FAMILIES)}"
            )
        out.append(MonitoredModel(name, family))
    return out


def registry_family(settings: Settings) -> Callable[[str], str | None]:
    """``family_of`` for :func:`monitored_models`: the ``ledgerline.family`` tag of the model's @champion."""

    def family_of(name: str) -> str | None:
        from mlflow.exceptions import MlflowException

        from ledgerline.registry import CHAMPION, client

        try:
            return client(settings).get_model_version_by_alias(name, CHAMPION).tags.get(lineage.FAMILY)
        except MlflowException:
            return None

    return family_of


def _decision_dict(decision: Any, family: str) -> dict[str, Any]:
    decided_at = getattr(decision, "decided_at", None)
    decision_id = decision.decision_id
    return {
        "decision_id": decision_id if isinstance(decision_id, int | str) else str(decision_id),
        "model_name": decision.model_name,
        "model_version": None if decision.model_version is None else str(decision.model_version),
        "family": family,
        "retrain": bool(decision.retrain),
        "reason": decision.reason,
        "suppressed": bool(getattr(decision, "suppressed", False)),
        "decided_at": decided_at.isoformat() if isinstance(decided_at, datetime) else decided_at,
    }


def monitor(settings: Settings, model: Mapping[str, str], now: datetime | None) -> dict[str, Any]:
    """Run the drift and performance jobs for one served model; return its decision."""
    from monitoring.jobs import run_monitoring

    decision = run_monitoring(settings, model["model_name"], now=now, expected_family=model["family"])
    logger.info("monitoring %s: %s", model["model_name"], decision.summary())
    return _decision_dict(decision, model["family"])


def retrain_plan(settings: Settings, models: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """TriggerDagRunOperator kwargs for every retrain decision not acted on yet (today's and missed ones)."""
    from monitoring.jobs import pending_retrain_decisions
    from training.pipeline import TRIGGERS

    plan: list[dict[str, Any]] = []
    for model in models:
        for d in pending_retrain_decisions(settings, model["model_name"]):
            reason = next((r for r in re.split(r"[^a-z]+", str(d.reason or "")) if r in TRIGGERS), "schedule")
            decision_id = _decision_dict(d, model["family"])["decision_id"]
            plan.append(
                {
                    "trigger_dag_id": retrain_dag_id(model["family"]),
                    "trigger_run_id": triggered_run_id(reason, model["model_name"], decision_id),
                    "conf": {"reason": reason, "model_name": model["model_name"], "decision_id": decision_id},
                }
            )
            logger.info("retrain %s (%s): decision %s", model["model_name"], reason, decision_id)
    return plan


def mark_triggered(settings: Settings, plan: Sequence[Mapping[str, Any]]) -> list[str]:
    """Record on each decision the DAG run that acts on it; returns those run ids."""
    from monitoring.jobs import mark_acted

    for item in plan:
        mark_acted(settings, item["conf"]["decision_id"], item["trigger_run_id"])
    return [str(item["trigger_run_id"]) for item in plan]


# --------------------------------------------------------------------------- Airflow adapters


@dataclass(frozen=True)
class TaskRun:
    """What a task needs from Airflow's context."""

    dag_id: str
    run_id: str
    when: datetime  # logical date, or run_after for runs without one (triggered by an event)
    params: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.dag_id}/{self.run_id}"


def current_run() -> TaskRun:
    from airflow.sdk import get_current_context

    ctx = get_current_context()
    dag_run = ctx["dag_run"]
    when = ctx.get("logical_date") or dag_run.run_after
    when = datetime.fromtimestamp(when.timestamp(), tz=UTC)  # a plain datetime, not pendulum's
    return TaskRun(dag_id=dag_run.dag_id, run_id=dag_run.run_id, when=when, params=dict(ctx.get("params") or {}))


def current_try() -> int:
    """The try number of the running task instance (1 on the first attempt)."""
    from airflow.sdk import get_current_context

    return int(get_current_context()["ti"].try_number or 1)


def airflow_lookup(name: str) -> str | None:
    """Airflow Variable ``name.lower()`` (which also reads ``AIRFLOW_VAR_*``), else env ``name``."""
    from airflow.sdk import Variable

    value = Variable.get(name.lower(), default=None)
    return str(value) if value not in (None, "") else env_lookup(name)


def airflow_settings() -> Settings:
    from airflow.sdk import Variable

    return settings_from(Variable.get(SETTINGS_VARIABLE, default=None))


def retrain_inputs(family: str) -> tuple[Settings, RetrainJob]:
    """Settings and the resolved job of the retrain run this task belongs to."""
    run = current_run()
    return airflow_settings(), retrain_job(family, run.params, when=run.when, dag_run=run.key, lookup=airflow_lookup)


def monitored_from_airflow(settings: Settings) -> list[dict[str, str]]:
    raw = airflow_lookup("LEDGERLINE_MONITORED_MODELS")
    return [m.as_dict() for m in monitored_models(raw, family_of=registry_family(settings))]


@contextmanager
def fail_fast() -> Iterator[None]:
    """Our domain errors (bad data, failed validation, bad conf) fail the task without retries:
    the same snapshot and conf would fail again. Anything else (network, database) is retried."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except LedgerlineError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
