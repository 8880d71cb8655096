"""The retrain DAG's tasks: ingest, validate, train (or plan, train and gather chunks), gate, promote.

``ingest`` also runs the pipeline's one check for a run that would register nothing (the CLI runs the
same): an empty window (``NothingNew``) or inputs equal to a registered version's (``AlreadyTrained``).
It writes the ledger row once per DAG run and raises; the DAG skips the rest of the run, which ends
a success.

Plain Python taking ``Settings`` and a :class:`RetrainJob` (tests call them without Airflow);
each is idempotent per DAG run (see :mod:`apps.orchestration`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from apps.orchestration.config import (
    DECISION_TAG,
    DEFAULT_MAX_CHUNKS,
    DEFAULT_REASON,
    DEFAULT_ROWS,
    MAX_CHUNKS_LIMIT,
    RUN_TAG,
    Lookup,
    env_lookup,
    family_key,
    first_given,
)
from ledgerline import lineage
from ledgerline.errors import LedgerlineError
from ledgerline.names import check_model_name
from ledgerline.settings import Settings

if TYPE_CHECKING:
    from training.gate import GateDecision
    from training.pipeline import TrainRequest

logger = logging.getLogger(__name__)


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
    #: data sources and window policy: the param ``source`` (a mapping) or a YAML path (param ``source_path``,
    #: else Variable/env LEDGERLINE_SOURCE__<FAMILY>); None: ``data`` or the generator
    source: Mapping[str, Any] | str | None = None
    #: the run's data interval (Airflow's data_interval_start/end; a run without one ends at its run_after),
    #: ISO datetimes in UTC; the window policy reads the window that ends at ``interval_end``
    interval_start: str | None = None
    interval_end: str | None = None
    force: bool = False  # train and register even when the inputs equal a registered version's
    #: hyper-parameter overrides (``ledgerline train --param KEY=VALUE``), checked by the family before any work
    hyper_params: tuple[tuple[str, Any], ...] = ()

    @property
    def ledger_marker(self) -> str:
        """The reason line naming this DAG run in a ledger row it writes (and how a retry finds that row)."""
        return f"Airflow DAG run {self.dag_run}"

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
            force=self.force,
            params=dict(self.hyper_params) or None,
            source=self.source,
            interval_end=self.interval_end,
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
    interval_start: datetime | str | None = None,
    interval_end: datetime | str | None = None,
) -> RetrainJob:
    """Resolve a retrain run: params/run conf first, then Variables/env (``lookup``), then defaults.

    ``interval_start``/``interval_end`` are the run's data interval (Airflow's); without an end the window
    ends at ``when``. The param ``interval_end`` (ISO datetime) overrides both (a backfill by hand)."""
    from ledgerline.families import FAMILIES
    from training.pipeline import TRIGGERS

    if family not in FAMILIES:
        raise LedgerlineError(f"unknown model family '{family}'; known families: {sorted(FAMILIES)}")
    reason = str(params.get("reason") or DEFAULT_REASON)
    if reason not in TRIGGERS:
        raise LedgerlineError(f"unknown retrain reason '{reason}'; use one of {list(TRIGGERS)}")
    rows = first_given(params.get("rows"), lookup("LEDGERLINE_RETRAIN_ROWS"), DEFAULT_ROWS)
    seed = params.get("seed")
    max_chunks = first_given(params.get("max_chunks"), lookup("LEDGERLINE_MAX_CHUNKS"), DEFAULT_MAX_CHUNKS)
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
    model_name = check_model_name(first_given(params.get("model_name"), lookup(family_key("LEDGERLINE_MODEL_NAME", family)), family))
    source = _source(family, params, lookup)
    end = first_given(params.get("interval_end"), interval_end, when)
    return RetrainJob(
        family=family,
        model_name=model_name,
        reason=reason,
        snapshot_date=snapshot_date,
        dag_run=dag_run,
        rows=rows,
        seed=seed,
        data=first_given(params.get("data_path"), lookup(family_key("LEDGERLINE_DATA", family))),
        spec_path=first_given(params.get("spec_path"), lookup(family_key("LEDGERLINE_SPEC", family))),
        target=first_given(params.get("target"), lookup(family_key("LEDGERLINE_TARGET", family))),
        positive_label=first_given(params.get("positive_label"), lookup(family_key("LEDGERLINE_POSITIVE_LABEL", family))),
        decision_id=str(decision_id) if decision_id not in (None, "") else None,
        max_chunks=max_chunks,
        options=tuple((dest, params[dest]) for dest in _option_dests(family) if params.get(dest) not in (None, "", False)),
        force=_flag(params.get("force")),
        hyper_params=_hyper_params(params.get("hyper_params")),
        source=source,
        interval_start=_iso(interval_start) if interval_start not in (None, "") else None,
        interval_end=_iso(end),
    )


def _hyper_params(value: Any) -> tuple[tuple[str, Any], ...]:
    """The param ``hyper_params`` (an object: name -> value, like ``--param KEY=VALUE``); the family checks
    names and ranges when the request is built."""
    if value in (None, "", {}):
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise LedgerlineError(f"hyper_params must be a JSON object of name -> value, e.g. {{\"max_depth\": 3}}: {exc}") from exc
    if not isinstance(value, Mapping):
        raise LedgerlineError(f"hyper_params must be an object of name -> value, e.g. {{\"max_depth\": 3}}, not {value!r}")
    return tuple(sorted((str(k), v) for k, v in value.items()))


def _flag(value: Any) -> bool:
    """A boolean param that may arrive as text from a run conf ("true", "1")."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _iso(value: datetime | str) -> str:
    from training.sources.window import parse_moment

    return parse_moment(value, what="data interval bound").isoformat()


def _source(family: str, params: Mapping[str, Any], lookup: Lookup) -> Mapping[str, Any] | str | None:
    """The run's source config: the param ``source`` (an object), else ``source_path``, else the Variable/env
    ``LEDGERLINE_SOURCE__<FAMILY>`` (a YAML path); checked now, before any task works."""
    from training.sources import source_config

    given, path = params.get("source"), params.get("source_path")
    if given not in (None, "", {}) and path not in (None, ""):
        raise LedgerlineError("give the param source (a mapping) or source_path (a YAML file), not both")
    if given not in (None, "", {}) and not isinstance(given, Mapping):
        raise LedgerlineError(f"the param source must be an object (window, base, sources), not {type(given).__name__}")
    source = given if given not in (None, "", {}) else first_given(path, lookup(family_key("LEDGERLINE_SOURCE", family)))
    source_config(source)  # a bad config fails the run here, naming what to fix
    return source


def _option_dests(family: str) -> list[str]:
    """The params naming the family's own train options (``ledgerline train``'s flags as names: text_column, freq)."""
    return [dest for dest, _, _ in option_params(family)]


def option_params(family: str) -> list[tuple[str, str, str]]:
    """The retrain DAG's params for the family's own train options: (name, JSON type, description), the same
    options ``ledgerline train`` takes (read when DAG files are parsed: the plug-ins import light)."""
    from training.family import get_family

    kinds: dict[object, str] = {int: "integer", float: "number"}
    return [
        (o.dest, "boolean" if o.switch else kinds.get(o.type, "string"), f"{o.help} (ledgerline train {o.flag})")
        for o in get_family(family).train_options
    ]


def ingest(settings: Settings, job: RetrainJob) -> str:
    """Write (or find) the immutable snapshot for the run's date; return its URI.

    A run that would register nothing raises after writing its ledger row (once per DAG run: a retry
    finds the row): ``NothingNew`` for an empty window, ``AlreadyTrained`` when the snapshot, spec and
    parameters equal those of the latest registered version or the champion (unless the run conf says
    ``force``). A version this very DAG run registered is no reason to stop: its retried tasks go on
    and find their work done.
    """
    from ledgerline.errors import AlreadyTrained, NothingNew
    from training.pipeline import NOTHING_NEW, UNCHANGED, prepare, unchanged_since

    req = job.request()
    try:
        prepared = prepare(settings, req)
    except NothingNew as exc:
        record_no_change_once(settings, job, action=NOTHING_NEW, reasons=[str(exc)])
        raise
    logger.info("snapshot %s (%d rows, reason=%s)", prepared.snapshot.uri, prepared.snapshot.rows, job.reason)
    if not job.force:
        unchanged = unchanged_since(settings, req, prepared)
        if unchanged is not None and unchanged.airflow_run != job.dag_run:
            record_no_change_once(settings, job, action=UNCHANGED, reasons=[unchanged.reason],
                                  run_id=unchanged.run_id, version=unchanged.version)
            raise AlreadyTrained(f"{job.model_name}: {unchanged.reason}")
    return prepared.snapshot.uri


def record_no_change_once(
    settings: Settings, job: RetrainJob, *, action: str, reasons: list[str], run_id: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The ledger row saying this DAG run registered nothing (``unchanged`` / ``nothing-new``), written
    once: a retried task returns the row an earlier attempt wrote."""
    from ledgerline import db
    from training.pipeline import NO_CHANGE_ACTIONS, record_no_change

    for row in reversed(db.ledger(settings.resolved_app_db_url(), job.model_name)):
        if row["action"] in NO_CHANGE_ACTIONS and job.ledger_marker in (row["reasons"] or []):
            logger.info("%s: this DAG run already recorded '%s' (ledger row %s)", job.model_name, row["action"], row["id"])
            return row
    row = record_no_change(settings, job.model_name, action=action, reasons=[*reasons, job.ledger_marker],
                           trigger=job.reason, run_id=run_id, version=version)
    logger.info("%s: %s, nothing registered (ledger row %s)", job.model_name, "; ".join(reasons), row["id"])
    return row


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
