"""The app database's schema is versioned with Alembic: from empty, from the unversioned
schema earlier releases created, concurrently, on Postgres and SQLite, and via the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata

from apps.cli import main
from ledgerline import db, migrations

pytestmark = pytest.mark.integration

APP_TABLES = {"batches", "batch_chunks", "category_corrections", "category_rules", "feedback_pending", "forecast_actuals", "promotion_ledger", "predictions", "feedback", "monitoring_results", "retrain_decisions"}
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def table_names(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_differences(url: str) -> list[Any]:
    """What ``alembic revision --autogenerate`` would write: [] when the database matches ``db.metadata``."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(migrations.migration_context(conn), db.all_metadata()))
    finally:
        engine.dispose()


def create_unversioned(url: str, tables: list[str] | None = None) -> None:
    """What Ledgerline did before migrations: ``metadata.create_all`` (of the tables as they were at 0001)."""
    baseline = migrations.baseline_schema()
    engine = db.make_engine(url)
    try:
        baseline.create_all(engine, tables=[baseline.tables[t] for t in tables] if tables else None)
    finally:
        engine.dispose()


def fill(url: str) -> None:
    """Rows in every table, written as the code writes them (JSON, booleans, times with zones, NULLs)."""
    t = migrations.baseline_schema().tables
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(t["promotion_ledger"].insert(), [
                {"model_name": "credit-risk", "version": str(v), "action": "promote", "passed": True,
                 "previous_champion": None if v == 1 else str(v - 1), "champion_after": str(v),
                 "reasons": [f"roc_auc 0.8{v} >= 0.70"], "challenger_metrics": {"roc_auc": 0.8 + v / 100},
                 "champion_metrics": None, "trigger": "manual", "run_id": f"run{v}", "decided_at": T0 + timedelta(days=v)}
                for v in (1, 2, 3)
            ])
            conn.execute(t["predictions"].insert(), [
                {"prediction_id": f"p-{i:04d}", "model_name": "credit-risk", "model_version": "3",
                 "created_at": T0 + timedelta(minutes=i), "inputs": {"income": 1000.0 + i, "purpose": "car"},
                 "outputs": {"probability": i / 100, "decision": "approve"}, "score": i / 100, "latency_ms": 2.5}
                for i in range(40)
            ])
            conn.execute(t["feedback"].insert(), [
                {"prediction_id": f"p-{i:04d}", "model_name": "credit-risk", "label": str(i % 2),
                 "received_at": T0 + timedelta(days=2, minutes=i)}
                for i in range(0, 40, 3)
            ])
            conn.execute(t["monitoring_results"].insert(), [
                {"model_name": "credit-risk", "model_version": "3", "job": job, "window_start": T0,
                 "window_end": T0 + timedelta(days=7), "status": "ok", "summary": {"psi": {"income": 0.01}},
                 "mlflow_run_id": None, "created_at": T0 + timedelta(days=7)}
                for job in ("drift", "performance")
            ])
            conn.execute(t["retrain_decisions"].insert(), [
                {"model_name": "credit-risk", "model_version": "3", "retrain": True, "reason": "drift",
                 "suppressed": False, "evidence": {"drift": {"status": "drift"}}, "decided_at": T0 + timedelta(days=7),
                 "acted_at": None, "dag_run_id": None}
            ])
    finally:
        engine.dispose()


def contents(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every app table, in primary-key order."""
    engine = db.make_engine(url)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for name in sorted(APP_TABLES & present):  # a pre-migration database has only 0001's tables
                table = db.all_metadata().tables[name]
                have = {c["name"] for c in sa.inspect(conn).get_columns(name)}  # and only 0001's columns
                rows = conn.execute(sa.select(*[c for c in table.columns if c.name in have])
                                    .order_by(*table.primary_key.columns))
                out[name] = [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()
    return out


def kept(after: dict[str, list[dict[str, Any]]], before: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``after``'s tables and columns that ``before`` had (later revisions add tables and columns)."""
    return {k: [{c: r[c] for c in (before[k][0] if before[k] else {})} for r in v] for k, v in after.items() if k in before}


# --------------------------------------------------------------------------- Postgres


def test_upgrade_of_an_empty_database_creates_every_table_and_stamps_head(make_database: Any) -> None:
    url = make_database("mig_empty")
    assert db.current_revision(url) is None

    done = db.upgrade(url)

    assert done.before is None and done.after == db.head_revision() and not done.adopted
    assert table_names(url) == APP_TABLES | {migrations.VERSION_TABLE}
    assert db.current_revision(url) == db.head_revision()
    assert contents(url) == {name: [] for name in APP_TABLES}


def test_the_migrated_schema_is_exactly_the_models_so_a_model_change_without_a_migration_fails(
    make_database: Any,
) -> None:
    url = make_database("mig_autogen")
    db.upgrade(url)
    assert schema_differences(url) == [], "ledgerline/db.py changed without a revision: run `make migration MSG=...`"


def test_a_database_created_before_migrations_is_adopted_with_every_row_kept(make_database: Any) -> None:
    url = make_database("mig_legacy")
    create_unversioned(url)
    fill(url)
    before = contents(url)
    assert {name: len(rows) for name, rows in before.items()} == {
        "promotion_ledger": 3, "predictions": 40, "feedback": 14, "monitoring_results": 2, "retrain_decisions": 1,
    }

    done = db.upgrade(url)

    assert done.adopted and done.before is None and done.after == db.head_revision()
    after = contents(url)
    assert kept(after, before) == before
    assert {r["batch_id"] for r in after["predictions"]} == {None}  # revision 0004_batches added the column, empty
    assert after["feedback_pending"] == []  # revision 0002 added it, empty
    assert after["predictions"][7]["inputs"] == {"income": 1007.0, "purpose": "car"}
    assert after["promotion_ledger"][2]["previous_champion"] == "2"
    assert after["feedback"][1]["received_at"] == T0 + timedelta(days=2, minutes=3)
    assert schema_differences(url) == []
    # and it keeps working: the next write goes through
    row = db.record_decision(url, model_name="credit-risk", version="4", action="reject", passed=False,
                             reasons=["roc_auc too low"], trigger="schedule")
    assert row["id"] == 4


def test_a_database_serving_created_before_migrations_gets_the_other_tables(make_database: Any) -> None:
    url = make_database("mig_partial")
    create_unversioned(url, ["predictions", "feedback"])  # what serving's create_all made on its own
    fill_url_rows = db.make_engine(url)
    try:
        with fill_url_rows.begin() as conn:
            conn.execute(db.feedback.insert().values(prediction_id="p-1", model_name="m", label="1", received_at=T0))
    finally:
        fill_url_rows.dispose()

    done = db.upgrade(url)

    assert done.adopted
    assert table_names(url) == APP_TABLES | {migrations.VERSION_TABLE}
    assert contents(url)["feedback"] == [{"prediction_id": "p-1", "model_name": "m", "label": "1", "received_at": T0}]
    assert schema_differences(url) == []


def test_an_unversioned_database_whose_tables_differ_is_refused_and_left_as_it_was(make_database: Any) -> None:
    url = make_database("mig_foreign")
    create_unversioned(url)
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE feedback ADD COLUMN note TEXT")
            conn.exec_driver_sql("ALTER TABLE predictions ALTER COLUMN score TYPE VARCHAR(20)")
    finally:
        engine.dispose()

    with pytest.raises(db.SchemaError) as err:
        db.upgrade(url)

    message = str(err.value)
    assert "unexpected column feedback.note" in message
    assert "predictions.score: type" in message
    assert "Nothing was changed" in message
    assert migrations.VERSION_TABLE not in table_names(url)
    assert db.current_revision(url) is None


def test_upgrading_twice_changes_nothing(make_database: Any) -> None:
    url = make_database("mig_twice")
    db.upgrade(url)
    fill_engine = db.make_engine(url)
    try:
        with fill_engine.begin() as conn:
            conn.execute(db.feedback.insert().values(prediction_id="p-1", model_name="m", label="0", received_at=T0))
    finally:
        fill_engine.dispose()
    before = contents(url)

    again = db.upgrade(url)

    assert not again.changed and again.before == again.after == db.head_revision()
    assert kept(contents(url), before) == before


def test_services_starting_together_all_upgrade_without_racing(make_database: Any) -> None:
    url = make_database("mig_race")
    starters = 6
    barrier = threading.Barrier(starters)
    results: list[db.Upgrade] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(db.upgrade(url))  # each with its own engine and connection, like separate workers
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert errors == []
    assert len(results) == starters
    assert sum(1 for r in results if r.before is None) == 1, "exactly one starter migrates, the others find it done"
    assert db.current_revision(url) == db.head_revision()
    assert schema_differences(url) == []


@pytest.mark.slow
def test_separate_processes_upgrading_an_unversioned_database_together_all_succeed(make_database: Any) -> None:
    url = make_database("mig_procs")
    create_unversioned(url)
    fill(url)
    before = contents(url)
    env = {**os.environ, "LEDGERLINE_APP_DB_URL": url}
    procs = [
        subprocess.Popen([sys.executable, "-m", "apps.cli", "db", "upgrade"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outputs
    said = sorted(out for out, _ in outputs)
    assert sum("adopted the unversioned app database" in s for s in said) == 1, said
    assert sum("already at" in s for s in said) == 1, said
    assert kept(contents(url), before) == before


def test_the_first_use_of_a_database_in_a_process_migrates_it(make_database: Any) -> None:
    url = make_database("mig_first_use")
    db.record_decision(url, model_name="m", version="1", action="promote", passed=True, reasons=[], trigger="manual")
    assert db.current_revision(url) == db.head_revision()


def test_serving_migrates_the_database_before_its_first_write(make_database: Any) -> None:
    from serving.store import TableGuard

    url = make_database("mig_serving")
    engine = db.make_engine(url)
    try:
        TableGuard(engine).ensure()
    finally:
        engine.dispose()
    assert db.current_revision(url) == db.head_revision()
    assert APP_TABLES <= table_names(url)


# --------------------------------------------------------------------------- SQLite (the demo)


def test_a_sqlite_file_database_upgrades_from_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert db.current_revision(url) is None
    assert not (tmp_path / "app.db").exists(), "looking at the revision must not create the file"

    assert db.upgrade(url).after == db.head_revision()

    assert table_names(url) == APP_TABLES | {migrations.VERSION_TABLE}
    assert schema_differences(url) == []
    assert not db.upgrade(url).changed


def test_a_sqlite_file_database_from_before_migrations_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_unversioned(url)
    fill(url)
    before = contents(url)

    assert db.upgrade(url).adopted

    assert kept(contents(url), before) == before
    assert sum(len(rows) for rows in before.values()) == 60
    assert db.current_revision(url) == db.head_revision()
    assert schema_differences(url) == []


def test_sqlite_starters_racing_on_one_file_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    barrier = threading.Barrier(4)
    results: list[db.Upgrade] = []

    def start() -> None:
        barrier.wait()
        results.append(db.upgrade(url))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4
    assert sum(1 for r in results if r.changed) == 1
    assert schema_differences(url) == []


def test_a_database_a_newer_release_migrated_is_refused_not_touched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0999'")
    finally:
        engine.dispose()

    with pytest.raises(db.SchemaError, match="at revision 0999, which this Ledgerline does not know"):
        db.upgrade(url)
    assert db.current_revision(url) == "0999"


# --------------------------------------------------------------------------- CLI


def test_db_upgrade_and_db_current_on_the_command_line(
    make_database: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_database("mig_cli")
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", url)

    assert main(["db", "current"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "none" and "run `ledgerline db upgrade`" in err

    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"upgraded the app database from empty to {db.head_revision()}"
    assert main(["db", "upgrade"]) == 0
    assert "already at" in capsys.readouterr().out

    assert main(["db", "current"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == db.head_revision() and err == ""


def test_db_upgrade_says_what_is_wrong_when_the_database_cannot_be_used(
    make_database: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--url", "not a url"]) == 2
    assert capsys.readouterr().err.startswith("error: the app database URL 'not a url' is not a SQLAlchemy URL")

    assert main(["db", "upgrade", "--url", "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot reach the app database at postgresql+psycopg2://")

    url = make_database("mig_cli_foreign")
    create_unversioned(url, ["feedback"])
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE feedback DROP COLUMN label")
    finally:
        engine.dispose()
    assert main(["db", "upgrade", "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing column feedback.label" in err
    assert table_names(url) == {"feedback"}
