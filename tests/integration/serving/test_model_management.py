"""The model management API against a live app, the real registry and the app database:
read endpoints (read or admin key), promote through the gate's floors or an explicit override,
rollback, retrain when Airflow is away, and every write in the promotion ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledgerline import db

MODEL = "credit-serving"  # the serving fixtures' model (tests/integration/serving/conftest.py)

pytestmark = pytest.mark.integration


@pytest.fixture
def mgmt(credit_v1_v2: Any, platform: Any, live_app: Any, sv: Any) -> Any:
    from apps.management import PipelineManagement

    # floors no version meets (so promotions need an override), and an Airflow that does not answer
    strict = platform.model_copy(update={
        "families": {"credit-risk": {"gate": {"min_roc_auc": 0.99}}}, "airflow_url": "http://127.0.0.1:9", "airflow_timeout_seconds": 2,
    })
    server = live_app(sv.serving_settings(), strict)
    server.app.state.serving.management = PipelineManagement(strict)
    yield server, credit_v1_v2, strict, sv
    credit_v1_v2.set_champion(credit_v1_v2.v1)


def test_reads_need_a_key_and_show_versions_lineage_ledger_and_monitoring(mgmt: Any) -> None:
    server, versions, settings, sv = mgmt
    HEADERS, ADMIN = sv.HEADERS, sv.ADMIN
    with server.client() as c:
        assert c.get(f"/v1/models/{MODEL}").status_code == 401
        listed = c.get("/v1/models", headers=HEADERS).json()
        assert listed["models"][MODEL]["version"] == versions.v1  # the served part is unchanged
        reg = listed["registry"][MODEL]
        assert reg["family"] == "credit-risk" and reg["champion"]["version"] == versions.v1
        assert reg["challenger"]["version"] == versions.v2 and reg["champion"]["metrics"]["roc_auc"] > 0.6
        assert 0 < reg["champion"]["decision_threshold"] < 1 and reg["champion"]["model_kind"] == "xgboost"
        assert c.get("/v1/models", headers=ADMIN).status_code == 200  # the admin key reads too

        detail = c.get(f"/v1/models/{MODEL}", headers=HEADERS).json()
        assert detail["aliases"] == {"champion": versions.v1, "challenger": versions.v2}
        by_version = {v["version"]: v for v in detail["versions"]}
        assert {versions.v1, versions.v2} <= by_version.keys()
        v1 = by_version[versions.v1]
        assert v1["aliases"] == ["champion"] and v1["gate"]["decision"] == "promoted" and v1["gate"]["reasons"]
        assert len(v1["lineage"]["snapshot_digest"]) == 64 and v1["lineage"]["validation"] == "passed"
        assert v1["metrics"]["roc_auc"] > 0.6 and v1["lineage"]["logical_date"] == "2026-01-05"
        assert c.get("/v1/models/no-such-model", headers=HEADERS).status_code == 404

        empty = c.get(f"/v1/models/{MODEL}/performance", headers=HEADERS).json()
        assert empty["latest"] == {"drift": None, "performance": None, "decision": None}
        from monitoring.store import record_result

        now = datetime.now(UTC)
        for i, status in enumerate(["ok", "drift"]):
            record_result(settings.resolved_app_db_url(), model_name=MODEL, model_version=versions.v1, job="drift",
                          window_start=now - timedelta(days=1), window_end=now, status=status,
                          summary={"share_drifted": 0.1 * i}, mlflow_run_id=None, created_at=now + timedelta(seconds=i))
        perf = c.get(f"/v1/models/{MODEL}/performance", headers=HEADERS, params={"limit": 10}).json()
        assert perf["latest"]["drift"]["status"] == "drift" and perf["latest"]["performance"] is None
        assert [r["status"] for r in perf["history"]["results"]] == ["drift", "ok"]
        assert c.get(f"/v1/models/{MODEL}/performance", headers=HEADERS, params={"limit": 0}).status_code == 422


def test_promote_goes_through_the_floors_unless_overridden_and_rollback_undoes_it_all_in_the_ledger(mgmt: Any) -> None:
    server, versions, settings, sv = mgmt
    HEADERS, ADMIN = sv.HEADERS, sv.ADMIN
    url = settings.resolved_app_db_url()
    body = {"version": versions.v2, "reason": "retrained on fresh data, reviewed", "requested_by": "alice"}
    with server.client() as c:
        assert c.post(f"/v1/models/{MODEL}/promote", json=body, headers=HEADERS).status_code == 403  # not the admin key
        short = c.post(f"/v1/models/{MODEL}/promote", json={**body, "reason": "why"}, headers=ADMIN)
        assert short.status_code == 422 and "reason" in short.text
        refused = c.post(f"/v1/models/{MODEL}/promote", json=body, headers=ADMIN)
        assert refused.status_code == 409 and "floor" in refused.json()["detail"] and "override" in refused.json()["detail"]
        assert db.ledger(url, MODEL) == []  # nothing moved, nothing written
        missing = c.post(f"/v1/models/{MODEL}/promote", json={**body, "version": "999"}, headers=ADMIN)
        assert missing.status_code == 404

        done = c.post(f"/v1/models/{MODEL}/promote", json={**body, "override": True}, headers=ADMIN)
        assert done.status_code == 200, done.text
        row = db.ledger(url, MODEL)[-1]
        assert (row["action"], row["version"], row["previous_champion"], row["champion_after"], row["passed"]) == (
            "manual-promote", versions.v2, versions.v1, versions.v2, False)
        assert "alice (admin key)" in row["reasons"][0] and "reviewed" in row["reasons"][0]
        assert row["reasons"][1].startswith("OVERRIDE of the gate's absolute floors")
        from ledgerline.registry import alias_version, client

        assert alias_version(client(settings), MODEL, "champion") == versions.v2

        back = c.post(f"/v1/models/{MODEL}/rollback", json={"requested_by": "bob", "reason": "complaints"}, headers=ADMIN)
        assert back.status_code == 200, back.text
        assert alias_version(client(settings), MODEL, "champion") == versions.v1
        last = db.ledger(url, MODEL)[-1]
        assert last["action"] == "rollback" and "bob (admin key): complaints" in last["reasons"][0]
        again = c.post(f"/v1/models/{MODEL}/rollback", json={"requested_by": "bob"}, headers=ADMIN)
        assert again.status_code == 409 and "no earlier champion" in again.json()["detail"]


def test_promoting_the_champion_is_a_409_saying_so_and_writes_nothing(mgmt: Any) -> None:
    server, versions, settings, sv = mgmt
    body = {"version": versions.v1, "reason": "make sure it is the champion", "requested_by": "alice"}
    with server.client() as c:
        for override in (False, True):
            r = c.post(f"/v1/models/{MODEL}/promote", json={**body, "override": override}, headers=sv.ADMIN)
            assert r.status_code == 409, r.text
            assert r.json()["detail"] == f"{MODEL} v{versions.v1} is @champion already; nothing to promote"
    assert db.ledger(settings.resolved_app_db_url(), MODEL) == []


def test_retrain_when_airflow_does_not_answer_is_a_503_naming_it_and_writes_nothing(mgmt: Any) -> None:
    server, _, settings, sv = mgmt
    ADMIN = sv.ADMIN
    with server.client() as c:
        r = c.post(f"/v1/models/{MODEL}/retrain", json={"requested_by": "carol", "note": "new bureau data"}, headers=ADMIN)
    assert r.status_code == 503 and "Airflow" in r.json()["detail"]
    assert db.ledger(settings.resolved_app_db_url(), MODEL) == []


def test_an_app_built_without_management_answers_writes_with_503(credit_v1: Any, platform: Any, live_app: Any, sv: Any) -> None:
    server = live_app(sv.serving_settings(), platform)
    with server.client() as c:
        r = c.post(f"/v1/models/{MODEL}/rollback", json={"requested_by": "bob"}, headers=sv.ADMIN)
    assert r.status_code == 503 and "ledgerline serve" in r.json()["detail"]
