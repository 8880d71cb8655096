"""Batch scoring jobs end to end on a real Airflow (api-server, scheduler, LocalExecutor on Postgres):
the serving API takes a file, Airflow's REST API starts the job, a killed task resumes after its last
committed chunk with no row lost or doubled; cancel, error share, ownership; the Airflow client itself;
a manual retrain through model management (on the same Airflow, its DAG paused so the run stays queued).

One Airflow per module (about a minute to start); tiny files in tiny chunks.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from families.credit_risk.data import generate_loan_applications
from ledgerline import db
from ledgerline.airflow_api import AirflowApi, AirflowUnavailable, airflow_api, get_dag_run, trigger_dag_run
from ledgerline.mlflow_server import start_process, stop_server, wait_for_http
from ledgerline.settings import Settings
from serving import batch_jobs as jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIRFLOW = str(Path(sys.executable).parent / "airflow")
USER, PASSWORD = "ledgerline", secrets.token_urlsafe(12)
MODEL = "credit-serving"  # the serving tests' model: trained once per session
KEY, OTHER_KEY, ADMIN_KEY = "batch-test-key-0001", "batch-test-key-0002", "batch-test-admin-0003"
CHUNK = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def airflow(
    make_database: Any, session_settings: Settings, airflow_base_env: dict[str, str], airflow_env_for: Any,
    airflow_cli: Any, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path]]:
    """api-server and scheduler (LocalExecutor) on a migrated Postgres metadata DB with the DAGs serialized."""
    home = tmp_path_factory.mktemp("airflow-batch")
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    port = _free_port()
    env = airflow_env_for(
        airflow_base_env, session_settings,
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=make_database("airflow_batch"),
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="3",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        LEDGERLINE_RETRAIN_SCHEDULE="none",
        LEDGERLINE_MONITOR_SCHEDULE="none",
    )
    airflow_cli([AIRFLOW, "db", "migrate"], env, home / "db-migrate.log", 300)
    airflow_cli([AIRFLOW, "dags", "reserialize"], env, home / "reserialize.log", 300)
    procs = []
    try:
        for name in ("api-server", "scheduler"):
            procs.append(start_process([AIRFLOW, name], env=env, log_path=home / f"{name}.log"))
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=180, proc=procs[0],
                      log_path=home / "api-server.log", name="airflow api-server")
        yield f"http://127.0.0.1:{port}", home
    finally:
        for proc in reversed(procs):
            stop_server(proc, timeout=20)


@pytest.fixture(scope="module")
def client(airflow: tuple[str, Path], session_settings: Settings, train_credit: Any) -> Iterator[Any]:
    """The serving app (in process) with the batch routes, pointed at that Airflow."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServingSettings

    train_credit(MODEL)
    url, _ = airflow
    platform = session_settings.model_copy(update={"airflow_url": url, "airflow_user": USER, "airflow_password": PASSWORD})
    serving = ServingSettings(models=[MODEL], api_keys=[KEY, OTHER_KEY], admin_key=ADMIN_KEY,  # type: ignore[call-arg]
                              batch_chunk_rows=CHUNK, poll_interval_seconds=3600, log_flush_interval_seconds=0.05)
    with TestClient(create_app(serving, platform)) as c:
        yield c


def _loans(n: int, bad: dict[int, tuple[str, Any]] | None = None, seed: int = 3) -> pd.DataFrame:
    frame = generate_loan_applications(n, seed=seed).astype({"application_id": str})
    for row, (col, value) in (bad or {}).items():
        frame[col] = frame[col].astype(object)
        frame.loc[row, col] = value
    return frame


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _wait(client: Any, batch_id: str, until: Any, timeout: float = 240, key: str = KEY) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/batches/{batch_id}", headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if until(seen[-1]):
            return seen[-1], seen
        time.sleep(0.05)
    pytest.fail(f"batch {batch_id} never got there: last {seen[-1] if seen else None}")


def _submit(client: Any, body: bytes, ctype: str = "text/csv", **params: Any) -> dict[str, Any]:
    r = client.post(f"/v1/models/{MODEL}/batches", content=body, params=params,
                    headers={"X-API-Key": KEY, "Content-Type": ctype})
    assert r.status_code == 202, r.text
    return dict(r.json())


N_KILLED = 3000
BAD = {7: ("annual_income", "lots"), 1234: ("purpose", "yacht")}


@pytest.fixture(scope="module")
def submitted(client: Any, session_settings: Settings, airflow: tuple[str, Path]) -> dict[str, Any]:
    """The module's jobs, submitted together so their Airflow tasks run side by side; mid-way, the task
    process of "killed" is killed (SIGKILL) after its 4th committed chunk and "cancelled" is cancelled
    after its 2nd. Progress samples of "killed" are kept under "seen"."""
    killed = _loans(N_KILLED, BAD)
    cancelled = _loans(3000, seed=5)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(cancelled, preserve_index=False), buf)
    out: dict[str, Any] = {
        "killed": (killed, _submit(client, _csv(killed))),
        "cancelled": (cancelled, _submit(client, buf.getvalue(), "application/vnd.apache.parquet")),
        "strict": (None, _submit(client, _csv(_loans(400, {120: ("annual_income", "-")}, seed=6)), max_error_share=0.0,
                                 output_format="parquet")),
        "seen": [],
    }
    kill_id, cancel_id = out["killed"][1]["batch_id"], out["cancelled"][1]["batch_id"]
    h = {"X-API-Key": KEY}
    engine = sa.create_engine(session_settings.resolved_app_db_url(), poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + 600  # task start-up (imports, model download) is slow on a busy machine
    todo = {"kill", "cancel"}
    while todo and time.monotonic() < deadline:
        k = client.get(f"/v1/batches/{kill_id}", headers=h).json()
        out["seen"].append(k)
        if "kill" in todo and k["chunks_done"] >= 4:
            with engine.connect() as conn:
                worker = conn.execute(sa.select(db.batches.c.worker).where(db.batches.c.batch_id == kill_id)).scalar_one()
            host, pid = worker.rsplit(":", 1)
            assert host == socket.gethostname()
            os.kill(int(pid), signal.SIGKILL)
            out["killed_at"] = client.get(f"/v1/batches/{kill_id}", headers=h).json()["chunks_done"]
            todo.discard("kill")
        if "cancel" in todo and client.get(f"/v1/batches/{cancel_id}", headers=h).json()["chunks_done"] >= 2:
            r = client.post(f"/v1/batches/{cancel_id}/cancel", headers=h)
            assert r.status_code in (200, 202) and r.json()["cancel_requested"], r.text
            todo.discard("cancel")
        time.sleep(0.05)
    engine.dispose()
    if todo:
        states = {k: client.get(f"/v1/batches/{v[1]['batch_id']}", headers=h).json() for k, v in out.items() if k != "seen"}
        logs = "\n".join(f"--- {p}\n{_tail(p)}" for p in [*airflow[1].glob("*.log"), *airflow[1].rglob("attempt=*")])
        pytest.fail(f"never got to {todo}: {states}\n{logs}")
    return out


def test_a_batch_whose_task_is_killed_resumes_after_its_last_chunk_with_no_row_lost_or_doubled(
    client: Any, submitted: dict[str, Any], airflow: tuple[str, Path], session_settings: Settings, tmp_path: Path,
) -> None:
    n, bad = N_KILLED, BAD
    loans, job = submitted["killed"]
    batch_id = job["batch_id"]
    assert job["state"] == "queued" and job["version"] and job["rows_total"] == n
    killed_at, seen = submitted["killed_at"], list(submitted["seen"])
    assert killed_at < n // CHUNK, "the job finished before it could be killed; give it more rows"
    engine = sa.create_engine(session_settings.resolved_app_db_url(), poolclass=sa.pool.NullPool)

    done, more = _wait(client, batch_id, lambda b: b["state"] in jobs.TERMINAL)
    seen += more
    logs = "\n".join(f"--- {p}\n{_tail(p)}" for p in airflow[1].glob("*.log"))
    assert done["state"] == "succeeded", f"{done}\n{logs}"
    assert done["attempts"] == 2 and done["rows_done"] == done["rows_total"] == n and done["rows_failed"] == 2
    assert done["rows_scored"] == n - 2 and done["progress"] == 1.0
    running = [s for s in seen if s["state"] == "running"]
    assert running and sorted(s["rows_done"] for s in running) == [s["rows_done"] for s in running]
    assert len({s["rows_done"] for s in running}) > 3, "progress moved chunk by chunk"

    chunks = jobs.committed_chunks(engine, batch_id)
    assert [c.chunk for c in chunks] == list(range(n // CHUNK))
    attempts = [c.attempt for c in chunks]
    assert attempts == sorted(attempts) and set(attempts) == {1, 2}, "attempt 2 started after attempt 1's last chunk"
    assert attempts.count(1) >= 4

    # results: every good row once, in file order, as `ledgerline score` writes them, plus the prediction id
    r = client.get(f"/v1/batches/{batch_id}/results", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-batch-complete"] == "true"
    results = pd.read_csv(io.BytesIO(r.content), dtype={"application_id": str})
    expected_ids = [a for i, a in enumerate(loans["application_id"]) if i not in bad]
    assert results["application_id"].tolist() == expected_ids
    assert list(results.columns) == [*loans.columns, "probability_of_default", "decision", "reason_codes", "prediction_id"]
    src = tmp_path / "loans.csv"
    src.write_bytes(_csv(loans))
    local = _score_locally(session_settings, src, tmp_path / "scored.csv")
    assert r.content.decode().splitlines()[1] == local.splitlines()[1] + "," + results["prediction_id"][0]
    assert [line.rsplit(",", 1)[0] for line in r.content.decode().splitlines()] == local.splitlines()

    # the prediction log has each scored row once, under the batch id and the results' prediction ids
    with engine.connect() as conn:
        logged = conn.execute(sa.select(db.predictions.c.prediction_id, db.predictions.c.model_version)
                              .where(db.predictions.c.batch_id == batch_id)).all()
    engine.dispose()
    assert len(logged) == n - 2 and {p for p, _ in logged} == set(results["prediction_id"])
    assert {v for _, v in logged} == {job["version"]}

    errors = client.get(f"/v1/batches/{batch_id}/errors", headers={"X-API-Key": KEY})
    rejected = pd.read_csv(io.BytesIO(errors.content), dtype=str)
    assert rejected["row"].tolist() == ["8", "1235"]
    assert "annual_income: is not a number" in rejected["error"][0] and "purpose" in rejected["error"][1]

    for path in (f"/v1/batches/{batch_id}", f"/v1/batches/{batch_id}/results", f"/v1/batches/{batch_id}/errors"):
        assert client.get(path, headers={"X-API-Key": OTHER_KEY}).status_code == 404  # not the caller's batch
    assert client.get(f"/v1/batches/{batch_id}").status_code == 401


def _score_locally(settings: Settings, src: Path, out: Path) -> str:
    from serving.batch import load_champion, offline_settings, score_file

    loaded = load_champion(settings, offline_settings(), MODEL)
    try:
        score_file(loaded, src, out, chunk_rows=CHUNK)
    finally:
        loaded.close()
    return out.read_text()


def test_a_cancelled_batch_and_one_with_too_many_bad_rows_stop_and_keep_their_results_downloadable(
    client: Any, submitted: dict[str, Any],
) -> None:
    loans, cancelled = submitted["cancelled"]
    _, strict = submitted["strict"]

    stopped, _ = _wait(client, cancelled["batch_id"], lambda b: b["state"] in jobs.TERMINAL)
    assert stopped["state"] == "cancelled" and stopped["rows_done"] < 3000
    part = client.get(f"/v1/batches/{cancelled['batch_id']}/results", headers={"X-API-Key": KEY})
    table = pq.read_table(io.BytesIO(part.content))
    assert part.headers["x-batch-complete"] == "false" and table.num_rows == stopped["rows_done"]
    assert table.column("application_id").to_pylist() == loans["application_id"].tolist()[: table.num_rows]

    failed, _ = _wait(client, strict["batch_id"], lambda b: b["state"] in jobs.TERMINAL)
    assert failed["state"] == "failed" and "1 of 400 rows were rejected" in failed["error"]
    assert failed["rows_done"] == 3 * CHUNK  # it stopped at the chunk holding row 121
    part = client.get(f"/v1/batches/{strict['batch_id']}/results", headers={"X-API-Key": KEY})
    assert pq.read_table(io.BytesIO(part.content)).num_rows == 3 * CHUNK - 1


def test_bad_submissions_are_refused_naming_the_problem_and_start_nothing(client: Any, session_settings: Settings) -> None:
    h = {"X-API-Key": KEY}
    url = f"/v1/models/{MODEL}/batches"
    no_income = _csv(_loans(5).drop(columns=["annual_income"]))
    r = client.post(url, content=no_income, headers={**h, "Content-Type": "text/csv"})
    assert r.status_code == 422 and "annual_income" in r.json()["detail"]
    r = client.post(url, content=b"x", headers={**h, "Content-Type": "application/zip"})
    assert r.status_code == 415 and "text/csv" in r.json()["detail"]
    r = client.post(url, json={"input_uri": "s3://elsewhere/loans.csv"}, headers=h)
    assert r.status_code == 422 and "not inside the artifact store" in r.json()["detail"]
    r = client.post(url, content=_csv(_loans(5)), params={"max_error_share": "2"}, headers={**h, "Content-Type": "text/csv"})
    assert r.status_code == 422 and "max_error_share" in r.json()["detail"]
    r = client.post("/v1/models/nope/batches", content=_csv(_loans(5)), headers={**h, "Content-Type": "text/csv"})
    assert r.status_code == 404
    assert client.get("/v1/batches/00000000-0000-0000-0000-000000000000", headers=h).status_code == 404


def test_a_daily_drop_is_scored_into_its_dated_location_once_per_logical_date(client: Any, session_settings: Settings) -> None:
    from ledgerline.artifact_store import artifact_store

    store = artifact_store(session_settings)
    tag = secrets.token_hex(3)
    store.put_bytes(f"drops/{tag}/2026-03-02/loans.csv", _csv(_loans(120, {3: ("annual_income", "?")}, seed=8)))
    args = (session_settings, MODEL, f"drops/{tag}/{{ds}}/loans.csv", f"scores/{tag}/{{ds}}/scores.csv", "2026-03-02")

    first = jobs.score_dated(*args, chunk_rows=CHUNK, max_error_share=0.05)
    body = b"".join(store.stream(f"scores/{tag}/2026-03-02/scores.csv"))
    again = jobs.score_dated(*args, chunk_rows=CHUNK, max_error_share=0.05)

    assert first == again and first["state"] == "succeeded" and first["rows"] == 120 and first["rejected"] == 1
    assert b"".join(store.stream(f"scores/{tag}/2026-03-02/scores.csv")) == body
    assert len(body.decode().splitlines()) == 1 + 119
    assert b"".join(store.stream(f"scores/{tag}/2026-03-02/scores.csv.errors.csv")).decode().count("\n") == 2
    engine = db.engine_for(session_settings.resolved_app_db_url())
    with engine.connect() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(db.predictions)
                              .where(db.predictions.c.batch_id == first["batch_id"])).scalar_one()
    assert logged == 119
    with pytest.raises(jobs.BatchError, match="no input for 2026-03-03"):
        jobs.score_dated(*args[:4], "2026-03-03")


# --------------------------------------------------------------------------- the Airflow client


def test_a_run_triggered_twice_with_one_run_id_is_one_run_and_its_state_is_readable(airflow: tuple[str, Path]) -> None:
    url, _ = airflow
    api = AirflowApi(url, USER, PASSWORD)
    run_id = f"api-test-{secrets.token_hex(3)}"
    conf = {"batch_id": "no-such-batch"}

    first = trigger_dag_run(api, jobs.BATCH_DAG_ID, conf, run_id=run_id, note="from the test")
    again = trigger_dag_run(api, jobs.BATCH_DAG_ID, {"other": 1}, run_id=run_id)
    read = get_dag_run(api, jobs.BATCH_DAG_ID, run_id)

    assert first.run_id == again.run_id == read.run_id == run_id
    assert first.dag_id == jobs.BATCH_DAG_ID and first.state == "queued"
    assert read.url == f"{url}/dags/{jobs.BATCH_DAG_ID}/runs/{run_id}"
    unnamed = trigger_dag_run(api, jobs.SCHEDULED_DAG_ID, {})  # Airflow names it
    assert unnamed.run_id != run_id and unnamed.dag_id == jobs.SCHEDULED_DAG_ID
    deadline = time.monotonic() + 120
    while (state := get_dag_run(api, jobs.BATCH_DAG_ID, run_id).state) not in ("success", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(1)
    assert state == "failed"  # no such batch: failed at once, not retried


def test_wrong_password_missing_dag_and_dead_server_are_airflow_unavailable(airflow: tuple[str, Path]) -> None:
    url, _ = airflow
    with pytest.raises(AirflowUnavailable, match="refused the login") as login:
        trigger_dag_run(AirflowApi(url, USER, "wrong"), jobs.BATCH_DAG_ID, {})
    assert login.value.status == 401
    api = AirflowApi(url, USER, PASSWORD)
    with pytest.raises(AirflowUnavailable, match="no DAG 'no_such_dag'"):
        trigger_dag_run(api, "no_such_dag", {})
    with pytest.raises(AirflowUnavailable, match="no run 'nope'"):
        get_dag_run(api, jobs.BATCH_DAG_ID, "nope")
    with pytest.raises(AirflowUnavailable, match="does not answer") as dead:
        get_dag_run(AirflowApi(f"http://127.0.0.1:{_free_port()}", None, None, timeout=2), jobs.BATCH_DAG_ID, "x")
    assert dead.value.status is None


def test_settings_name_the_server_and_the_demo_password_is_found(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, airflow_url="http://af:8080/", airflow_user="u", airflow_password="p")
    assert airflow_api(settings) == AirflowApi("http://af:8080", "u", "p", 10.0)
    assert repr(airflow_api(settings)) == "AirflowApi(base_url='http://af:8080', username='u', timeout=10.0)"
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "gen"}\n')
    demo = airflow_api(Settings(home=tmp_path))
    assert (demo.base_url, demo.username, demo.password) == ("http://127.0.0.1:8080", "admin", "gen")
    assert airflow_api(Settings(home=tmp_path / "none")).username is None


# --------------------------------------------------------------------------- model management


def test_a_manual_retrain_through_model_management_starts_the_familys_dag_and_is_in_the_ledger(
    airflow: tuple[str, Path], train_credit: Any
) -> None:
    from apps.management import PipelineManagement
    from ledgerline import db
    from ledgerline.airflow_api import _call
    from serving.management import Actor

    api_server, _ = airflow
    # paused, so this module's scheduler leaves the run queued (a real retrain would move other tests' models)
    status, _body = _call(AirflowApi(api_server, USER, PASSWORD), "PATCH", "/api/v2/dags/ledgerline_retrain_credit_risk",
                          {"is_paused": True})
    assert status == 200, _body
    trained = train_credit("credit-pipeline")
    settings = trained.settings.model_copy(update={"airflow_url": api_server, "airflow_user": USER, "airflow_password": PASSWORD})
    ledger_before = db.ledger(settings.resolved_app_db_url(), "credit-pipeline")
    # two requests at once (a double click): one DAG run, one ledger row; the second joins the first's run
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda who: PipelineManagement(settings).retrain(
            "credit-pipeline", note="new bureau data", actor=Actor(who, "admin key")), ["carol", "dave"]))
    assert sorted(a["status"] for a in answers) == ["already requested", "triggered"], answers
    assert answers[0]["dag_run_id"] == answers[1]["dag_run_id"]
    run = next(a for a in answers if a["status"] == "triggered")
    assert len(db.ledger(settings.resolved_app_db_url(), "credit-pipeline")) == len(ledger_before) + 1
    runs = _call(AirflowApi(api_server, USER, PASSWORD), "GET", "/api/v2/dags/ledgerline_retrain_credit_risk/dagRuns")[1]
    assert [r["dag_run_id"] for r in runs["dag_runs"] if r["dag_run_id"].startswith("manual__")] == [run["dag_run_id"]]
    assert run["dag_id"] == "ledgerline_retrain_credit_risk" and run["dag_run_id"].startswith("manual__credit-pipeline__")
    assert run["url"] == f"{api_server}/dags/{run['dag_id']}/runs/{run['dag_run_id']}" and run["state"] == "queued"
    read = get_dag_run(AirflowApi(api_server, USER, PASSWORD), run["dag_id"], run["dag_run_id"])
    assert read.state == "queued"
    row = db.ledger(settings.resolved_app_db_url(), "credit-pipeline")[-1]
    assert row["action"] == "retrain-request" and " (admin key): new bureau data" in row["reasons"][0]
    assert run["dag_run_id"] in row["reasons"][1]
