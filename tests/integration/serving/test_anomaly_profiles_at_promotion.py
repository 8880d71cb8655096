"""Go-live of an anomaly champion: promotion fills the online customer profiles from the version's
training window, so the served app scores a known customer with its history, not as a cold start.

A model trained through the real pipeline (the session's MLflow server and Postgres); profiles in a
real Redis (db 12, the session's own key prefix, see tests/conftest.py); the real app under uvicorn.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from families.transaction_anomaly.behaviour import Profile, replay_customers
from families.transaction_anomaly.data import dataset_from_spec
from families.transaction_anomaly.profile_fill import fill_profiles
from families.transaction_anomaly.settings import TransactionAnomalySettings

pytestmark = pytest.mark.integration

MODEL = "anomaly-golive"


@pytest.fixture(scope="module")
def champion(train_anomaly: Callable[..., Any]) -> Any:
    trained = train_anomaly(MODEL)
    assert trained.champion == trained.version
    return trained


def own_settings(settings: Any) -> TransactionAnomalySettings:
    return TransactionAnomalySettings.of(settings.families)


def stored(settings: Any) -> dict[str, bytes]:
    """Every profile of MODEL in the store, by customer."""
    own = own_settings(settings)
    prefix = own.model_prefix(MODEL)
    r = redis.Redis.from_url(own.profile_store_url)
    try:
        return {k.decode().removeprefix(prefix): r.get(k) for k in r.scan_iter(match=prefix + "*", count=1000)}
    finally:
        r.close()


def window(trained: Any) -> pd.DataFrame:
    return pd.read_parquet(trained.snapshot_uri)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"  # nothing listens there once closed


def ledger_rows(settings: Any) -> list[dict[str, Any]]:
    from ledgerline import db

    return db.ledger(settings.resolved_app_db_url(), MODEL)


def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path, redis_url: str) -> None:
    own = own_settings(settings)
    monkeypatch.setenv("LEDGERLINE_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", settings.resolved_app_db_url())
    monkeypatch.setenv("LEDGERLINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLINE_TRANSACTION_ANOMALY_PROFILE_STORE_URL", redis_url)
    monkeypatch.setenv("LEDGERLINE_TRANSACTION_ANOMALY_PROFILE_KEY_PREFIX", own.profile_key_prefix)


def test_after_promotion_a_customer_of_the_training_window_is_scored_with_its_history(
    champion: Any, live_app: Any, sv: Any, fresh_app_db_url: str, tmp_path: Path
) -> None:
    settings = champion.settings
    promoted = [r for r in ledger_rows(settings) if r["action"] == "promote" and r["version"] == champion.version]
    assert promoted and any("customer profiles filled from v" in reason for reason in promoted[-1]["reasons"])

    data = window(champion)
    purchases = data[data["amount"] >= 0].groupby("customer_id").size()
    profiles = stored(settings)
    assert set(profiles) == set(data["customer_id"].astype(str))
    # each stored profile is the replay of that customer's training rows through the online update
    from training.history import training_data

    td = training_data(settings, MODEL, champion.version)
    from features.spec import conform

    expected = {c: p.to_json() for c, p, _ in replay_customers(conform(td.frame, td.spec), dataset_from_spec(td.spec))}
    assert {c: raw.decode() for c, raw in profiles.items()} == expected

    customer = str(purchases.sort_values().index[-1])  # the busiest customer of the window
    last = data[data["customer_id"] == customer].sort_values("timestamp").iloc[-1]
    txn = {"transaction_id": "golive-1", "customer_id": customer,
           "timestamp": (last["timestamp"] + pd.Timedelta(hours=2)).isoformat(), "amount": 35.0,
           "currency": last["currency"], "merchant_category": last["merchant_category"],
           "merchant_id": last["merchant_id"], "channel": last["channel"], "country": last["country"],
           "device_id": last["device_id"]}
    stranger = {**txn, "transaction_id": "golive-2", "customer_id": "c-not-in-the-window"}
    own = own_settings(settings)
    serving = sv.serving_settings(models=[MODEL], families={"transaction-anomaly": {
        "profile_store_url": own.profile_store_url, "profile_key_prefix": own.profile_key_prefix}})
    platform = settings.model_copy(update={"app_db_url": fresh_app_db_url, "home": tmp_path / "home"})
    server = live_app(serving, platform)
    with server.client() as c:
        answers = []
        for body in (txn, txn, stranger):  # the second: a client's retry of the same transaction
            r = c.post(f"/v1/models/{MODEL}/predict", json=body, headers=sv.HEADERS)
            assert r.status_code == 200, r.text
            answers.append(r.json()["predictions"][0])
    known, retry, new = answers
    assert known["cold_start"] is False and known["profile_available"] is True
    assert known["features"]["history_count"] == float(purchases[customer])
    assert known["version"] == champion.version
    assert retry["features"]["history_count"] == float(purchases[customer]) + 1  # the profile holds it once
    assert Profile.from_json(stored(settings)[customer]).n == purchases[customer] + 1
    assert new["cold_start"] is True and new["features"]["history_count"] == 0.0


def test_a_refresh_replaces_the_profiles_and_a_second_one_changes_nothing(champion: Any) -> None:
    settings = champion.settings
    lines: list[str] = []
    first = fill_profiles(settings, MODEL, champion.version, progress=lines.append, batch=7, progress_every_s=0.0)
    after_first = stored(settings)
    second = fill_profiles(settings, MODEL, champion.version, batch=1000)
    assert first is not None and second is not None
    assert stored(settings) == after_first  # idempotent: the same window leaves identical profiles
    customers = window(champion)["customer_id"].nunique()
    assert first.customers == second.customers == second.replaced == customers
    assert second.rows == len(window(champion))
    assert any("customers/s" in line for line in lines)
    # a profile changed online meanwhile is replaced by the window's again (a refresh never double-counts)
    # (a customer of the window: the store also holds customers an earlier test's traffic created, which a
    # fill leaves alone)
    own = own_settings(settings)
    customer = str(window(champion)["customer_id"].iloc[0])
    key = own.model_prefix(MODEL) + customer
    r = redis.Redis.from_url(own.profile_store_url)
    try:
        r.set(key, Profile(n=999).to_json())
        fill_profiles(settings, MODEL, champion.version)
        assert r.get(key) == after_first[customer]
        assert r.ttl(key) > 170 * 86_400  # the serving store's TTL
    finally:
        r.close()


def test_with_redis_down_the_champion_moves_the_ledger_says_profiles_not_filled_and_load_fails(
    champion: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from apps.cli import main
    from ledgerline.registry import CHAMPION, alias_version, client
    from training.pipeline import TrainRequest, manual_promote, rollback, run_training

    good = champion.settings
    down_url = closed_port_url()
    down = good.model_copy(update={"families": {**good.families, "transaction-anomaly": {
        **good.families["transaction-anomaly"], "profile_store_url": down_url}}})
    before = stored(good)
    lines: list[str] = []
    result = run_training(down, TrainRequest(family="transaction-anomaly", model_name=MODEL, rows=8000, seed=43,
                                             logical_date="2026-01-12", params={"n_estimators": 100}), lines.append)
    v2 = result.version
    if result.champion != v2:  # the gate kept v1: promote by hand (the same hook runs)
        manual_promote(down, MODEL, v2, reason="go-live test: Redis is down", actor="test", override=True,
                       progress=lines.append)
    assert alias_version(client(good), MODEL, CHAMPION) == v2  # the model moved all the same
    row = [r for r in ledger_rows(good) if r["version"] == v2][-1]
    note = next(reason for reason in row["reasons"] if "NOT filled" in reason)
    assert note.startswith("WARNING:") and "unreachable" in note and f"ledgerline profiles load {MODEL}" in note
    assert any("NOT filled" in line for line in lines)
    assert stored(good) == before  # nothing written anywhere

    cli_env(monkeypatch, good, tmp_path, down_url)
    capsys.readouterr()
    assert main(["profiles", "load", MODEL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "unreachable" in err[0], err

    # back to v1 with Redis up: the rollback refills v1's window; the command fills v2's on demand
    rollback(good, MODEL, progress=lines.append)
    assert alias_version(client(good), MODEL, CHAMPION) == champion.version
    back = ledger_rows(good)[-1]
    assert back["action"] == "rollback" and any("customer profiles filled" in r for r in back["reasons"])
    assert stored(good) == before
    cli_env(monkeypatch, good, tmp_path, own_settings(good).profile_store_url)
    assert main(["profiles", "load", MODEL, "--version", v2]) == 0
    out = capsys.readouterr().out
    assert f"from v{v2}'s training window" in out
    v2_customers = set(pd.read_parquet(result.snapshot_uri)["customer_id"].astype(str))
    assert v2_customers <= set(stored(good))
    assert main(["profiles", "load", MODEL, "--version", "x"]) == 2
    fill_profiles(good, MODEL, champion.version)  # leave v1's window for the other tests


def test_without_its_snapshot_the_window_comes_from_a_data_file_logged_to_the_run_else_the_fill_says_so(
    champion: Any, tmp_path: Path
) -> None:
    from families.transaction_anomaly.profile_fill import ProfilesNotFilled, on_champion_note
    from ledgerline.registry import client

    settings = champion.settings
    snapshot = Path(champion.snapshot_uri)
    aside = tmp_path / "aside.parquet"
    before = stored(settings)
    snapshot.rename(aside)
    try:
        with pytest.raises(ProfilesNotFilled, match="is gone, and the run logged no data file"):
            fill_profiles(settings, MODEL, champion.version)
        lines: list[str] = []
        note = on_champion_note(settings, MODEL, champion.version, champion.run_id, lines.append)
        assert note is not None and note.startswith("WARNING: customer profiles of") and "NOT filled" in note
        assert lines == [note] and stored(settings) == before

        logged = tmp_path / "window.parquet"
        pd.read_parquet(aside).to_parquet(logged, index=False)
        client(settings).log_artifact(champion.run_id, str(logged), "data")
        report = fill_profiles(settings, MODEL, champion.version)
        assert report is not None and report.source == f"runs:/{champion.run_id}/data/window.parquet"
        assert stored(settings) == before  # the same rows: the same profiles
    finally:
        aside.rename(snapshot)

    memory = settings.model_copy(update={"families": {**settings.families, "transaction-anomaly": {
        "profile_store_url": "memory"}}})
    with pytest.raises(ProfilesNotFilled, match="memory") as exc:
        fill_profiles(memory, MODEL, champion.version)
    assert exc.value.retryable is False
    assert "profiles load" not in (on_champion_note(memory, MODEL, champion.version, None, lambda _m: None) or "")


def test_a_hook_that_breaks_never_stops_the_promotion_it_becomes_a_loud_note(
    champion: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from families.transaction_anomaly.train import TransactionAnomalyFamily
    from training.promotion import prepare_champion

    def broken(*_args: Any) -> str:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(TransactionAnomalyFamily, "on_champion", broken)
    lines: list[str] = []
    notes = prepare_champion(champion.settings, MODEL, champion.version, progress=lines.append)
    assert notes == lines == [f"WARNING: transaction-anomaly on-champion step for v{champion.version} FAILED and was "
                              "not done: disk on fire"]
