"""The write side of the model management API (``POST /v1/models/{name}/promote|rollback|retrain``)
and the ``ledgerline serve`` app factory that hands it to the serving app.

Promotions and rollbacks go through :mod:`training.pipeline` (gate floors, aliases, the promotion
ledger), exactly as the CLI does; a retrain is a run of the family's retrain DAG started through
Airflow's REST API (:mod:`ledgerline.airflow_api`) with reason ``manual``, and is recorded in
the ledger as ``retrain-request`` with who asked and the DAG run.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ledgerline.errors import LedgerlineError, RegistryError
from ledgerline.settings import Settings
from serving.management import Actor, ManagementError

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

#: the ledger action of a retrain asked for through the API
RETRAIN_REQUEST = "retrain-request"


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
        from ledgerline.airflow_api import AirflowUnavailable, airflow_api, trigger_dag_run
        from ledgerline.families import family_from_tags
        from ledgerline.registry import CHAMPION, alias_version, client

        c = client(self.settings)
        champion = alias_version(c, name, CHAMPION)
        versions = c.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ManagementError(f"no registered model named '{name}'; train it first", "not_found")
        latest = max(versions, key=lambda v: int(v.version))
        family = family_from_tags(latest.tags, f"{name} v{latest.version}")
        dag_id = retrain_dag_id(family)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        run_id = re.sub(r"[^A-Za-z0-9_.~:+-]", "-", f"manual__{name[:100]}__{stamp}")
        text = f"manual retrain of {name} requested by {actor}" + (f": {note.strip()}" if note and note.strip() else "")
        try:
            ref = trigger_dag_run(airflow_api(self.settings), dag_id, {"reason": "manual", "model_name": name},
                                  run_id=run_id, note=text[:1000])
        except AirflowUnavailable as exc:
            raise ManagementError(str(exc), "unavailable") from exc
        db.record_decision(
            self.settings.resolved_app_db_url(), model_name=name, version=champion or latest.version,
            action=RETRAIN_REQUEST, passed=True, reasons=[text, f"Airflow DAG run {ref.dag_id}/{ref.run_id}"],
            trigger="manual", previous_champion=champion, champion_after=champion,
        )
        return {"dag_id": ref.dag_id, "dag_run_id": ref.run_id, "state": ref.state, "url": ref.url}


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory apps.management:app_from_env`` (what ``ledgerline serve`` runs):
    the serving app with model management on the platform settings."""
    from serving.app import create_app
    from serving.settings import ServingSettings

    platform = Settings()
    return create_app(ServingSettings(), platform, management=PipelineManagement(platform))
