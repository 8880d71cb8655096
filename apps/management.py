"""The write side of the model management API (``POST /v1/models/{name}/promote|rollback|retrain``)
and the ``ledgerline serve`` app factory that hands it to the serving app.

Promotions and rollbacks go through :mod:`training.pipeline` (gate floors, aliases, the promotion
ledger), exactly as the CLI does; a retrain is a run of the family's retrain DAG started through
Airflow's REST API (:mod:`ledgerline.airflow_api`) with reason ``manual``, and is recorded in
the ledger as ``retrain-request`` with who asked and the DAG run. A second request while the first one's
run is still queued or running, within the monitoring cooldown (``LEDGERLINE_MONITORING_COOLDOWN_DAYS``),
starts nothing: it answers that run (``status: already requested``). Requests are serialised per model
(a Postgres advisory lock), so two sent 60 ms apart cannot both start a run.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ledgerline.errors import LedgerlineError, RegistryError
from ledgerline.settings import Settings
from serving.management import Actor, ManagementError

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

#: the ledger action of a retrain asked for through the API
RETRAIN_REQUEST = "retrain-request"
#: how a retrain-request ledger row names its DAG run ("Airflow DAG run <dag_id>/<run_id>")
_RUN_LINE = re.compile(r"^Airflow DAG run (?P<dag_id>[^/]+)/(?P<run_id>.+)$")
#: DAG run states of a request still to be acted on: a new request joins it instead of starting another
PENDING_STATES = ("queued", "running")


@contextmanager
def request_lock(url: str, name: str) -> Iterator[None]:
    """Retrain requests of one model one at a time (a Postgres advisory lock held for a transaction;
    SQLite, the demo's one process: no lock)."""
    import sqlalchemy as sa

    from ledgerline import db

    engine = db.engine_for(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            key = zlib.crc32(f"ledgerline.retrain-request:{name}".encode())
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        yield


def pending_request(url: str, name: str, *, now: datetime, cooldown_days: float) -> tuple[str, str] | None:
    """(dag_id, run_id) of the latest retrain request of ``name`` within the cooldown, if any (its state is
    Airflow's to say)."""
    from ledgerline import db

    for row in reversed(db.ledger(url, name)):
        if row["action"] != RETRAIN_REQUEST:
            continue
        decided = row["decided_at"] if row["decided_at"].tzinfo else row["decided_at"].replace(tzinfo=UTC)
        if now - decided >= timedelta(days=cooldown_days):
            return None
        for line in row["reasons"] or []:
            found = _RUN_LINE.match(str(line))
            if found:
                return found["dag_id"], found["run_id"]
        return None
    return None


class PipelineManagement:
    """:class:`serving.management.ModelManagement` on the training pipeline and Airflow."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def promote(self, name: str, version: str, *, reason: str, actor: Actor, override: bool) -> dict[str, Any]:
        from training.pipeline import PromotionRefused, manual_promote

        try:
            return manual_promote(self.settings, name, version, reason=reason, actor=str(actor), override=override)
        except PromotionRefused as exc:
            raise ManagementError(str(exc), "refused") from exc
        except RegistryError as exc:
            raise ManagementError(str(exc), "not_found") from exc
        except LedgerlineError as exc:
            raise ManagementError(str(exc), "invalid") from exc

    def rollback(self, name: str, *, reason: str | None, actor: Actor) -> dict[str, Any]:
        from ledgerline import db
        from training.pipeline import rollback

        try:
            rollback(self.settings, name, actor=str(actor), note=reason)
        except RegistryError as exc:
            raise ManagementError(str(exc), "refused") from exc
        return db.ledger(self.settings.resolved_app_db_url(), name)[-1]

    def retrain(self, name: str, *, note: str | None, actor: Actor) -> dict[str, Any]:
        from apps.orchestration import retrain_dag_id
        from ledgerline import db
        from ledgerline.airflow_api import AirflowUnavailable, airflow_api, get_dag_run, trigger_dag_run
        from ledgerline.families import family_from_tags
        from ledgerline.registry import CHAMPION, alias_version, client
        from monitoring.settings import MonitoringSettings

        c = client(self.settings)
        champion = alias_version(c, name, CHAMPION)
        versions = c.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ManagementError(f"no registered model named '{name}'; train it first", "not_found")
        latest = max(versions, key=lambda v: int(v.version))
        family = family_from_tags(latest.tags, f"{name} v{latest.version}")
        dag_id = retrain_dag_id(family)
        url = self.settings.resolved_app_db_url()
        text = f"manual retrain of {name} requested by {actor}" + (f": {note.strip()}" if note and note.strip() else "")
        with request_lock(url, name):  # a second request waits here for the first one's ledger row
            now = datetime.now(UTC)
            try:
                api = airflow_api(self.settings)
                earlier = pending_request(url, name, now=now, cooldown_days=MonitoringSettings().cooldown_days)
                if earlier is not None:
                    try:
                        ref = get_dag_run(api, *earlier)
                    except AirflowUnavailable as exc:
                        if exc.status != 404:
                            raise
                        ref = None  # that run was deleted from Airflow: nothing to join
                    if ref is not None and ref.state in PENDING_STATES:
                        logger.info("retrain of %s requested by %s joins run %s/%s (%s)", name, actor, ref.dag_id,
                                    ref.run_id, ref.state)
                        return {"status": "already requested", "dag_id": ref.dag_id, "dag_run_id": ref.run_id,
                                "state": ref.state, "url": ref.url}
                stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
                run_id = re.sub(r"[^A-Za-z0-9_.~:+-]", "-", f"manual__{name[:100]}__{stamp}")
                ref = trigger_dag_run(api, dag_id, {"reason": "manual", "model_name": name}, run_id=run_id,
                                      note=text[:1000])
            except AirflowUnavailable as exc:
                raise ManagementError(str(exc), "unavailable") from exc
            db.record_decision(
                url, model_name=name, version=champion or latest.version,
                action=RETRAIN_REQUEST, passed=True, reasons=[text, f"Airflow DAG run {ref.dag_id}/{ref.run_id}"],
                trigger="manual", previous_champion=champion, champion_after=champion,
            )
        return {"status": "triggered", "dag_id": ref.dag_id, "dag_run_id": ref.run_id, "state": ref.state, "url": ref.url}


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory apps.management:app_from_env`` (what ``ledgerline serve`` runs):
    the serving app with model management on the platform settings."""
    from serving.app import create_app
    from serving.settings import ServingSettings

    platform = Settings()
    return create_app(ServingSettings(), platform, management=PipelineManagement(platform))
