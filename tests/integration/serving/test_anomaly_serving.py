"""The transaction-anomaly family served end to end: a model trained through the real pipeline,
served by the real app under uvicorn, customer profiles in a real Redis (a db and key prefix of
these tests' own, emptied afterwards)."""

from __future__ import annotations

import collections
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import redis

from families.transaction_anomaly.behaviour import FEATURE_NAMES, compute_offline
from families.transaction_anomaly.data import PATTERN_FEATURES, generate_transactions

pytestmark = pytest.mark.integration

MODEL = "anomaly-serving"
REDIS_DB = 13
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
RECORD_FIELDS = ("transaction_id", "customer_id", "timestamp", "amount", "currency", "merchant_category",
                 "merchant_id", "channel", "country", "device_id")


@pytest.fixture(scope="module")
def anomaly_model(train_anomaly: Callable[..., Any]) -> Any:
    trained = train_anomaly(MODEL)
    assert trained.champion == trained.version
    return trained


@pytest.fixture
def anomaly_platform(anomaly_model: Any, fresh_app_db_url: str, tmp_path: Path) -> Any:
    return anomaly_model.settings.model_copy(update={"app_db_url": fresh_app_db_url, "home": tmp_path / "home"})


@pytest.fixture
def profile_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"ll-test-{secrets.token_hex(4)}:"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter(match=prefix + "*", count=500):
        r.delete(key)
    r.close()


def profile_keys(prefix: str) -> dict[bytes, bytes | None]:
    r = redis.Redis.from_url(REDIS_URL)
    try:
        return {k: r.get(k) for k in r.scan_iter(match=prefix + "*", count=500)}
    finally:
        r.close()


def anomaly_settings(sv: Any, prefix: str, url: str = REDIS_URL, **overrides: Any) -> Any:
    own = {"profile_store_url": url, "profile_key_prefix": prefix}
    return sv.serving_settings(models=[MODEL], families={"transaction-anomaly": own}, **overrides)


def as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame[list(RECORD_FIELDS)].to_dict(orient="records"):
        row["timestamp"] = row["timestamp"].isoformat()
        row["amount"] = float(row["amount"])
        out.append(row)
    return out


def predict(c: httpx.Client, sv: Any, body: Any) -> httpx.Response:
    return c.post(f"/v1/models/{MODEL}/predict", json=body, headers=sv.HEADERS)


def stream() -> pd.DataFrame:
    """About 100 customers' transactions over 90 days, frauds included, in time order."""
    return generate_transactions(6000, seed=5)


def test_a_replayed_stream_gets_the_offline_features_and_reasons_that_name_the_injected_pattern(
    anomaly_model: Any, anomaly_platform: Any, profile_prefix: str, live_app: Any, sv: Any
) -> None:
    df = stream()
    records = as_records(df)
    server = live_app(anomaly_settings(sv, profile_prefix), anomaly_platform)
    answers: list[dict[str, Any]] = []
    with server.client() as c:
        for rec in records[:50]:  # single records, then batches: the same stream, in order
            r = predict(c, sv, rec)
            assert r.status_code == 200, r.text
            answers.extend(r.json()["predictions"])
        for i in range(50, len(records), 250):
            r = predict(c, sv, records[i:i + 250])
            assert r.status_code == 200, r.text
            answers.extend(r.json()["predictions"])
    assert len(answers) == len(df)

    served = pd.DataFrame([a["features"] for a in answers], index=df.index)[list(FEATURE_NAMES)]
    offline = compute_offline(df)
    np.testing.assert_allclose(served.to_numpy(), offline.to_numpy(), rtol=1e-6, atol=1e-6)

    first = answers[0]
    assert first["model"] == MODEL and first["version"] == anomaly_model.version and first["prediction_id"]
    assert first["cold_start"] is True and first["profile_available"] is True
    assert "first transaction" in first["reasons"][0]["text"]
    assert all(0.0 <= a["anomaly_score"] <= 1.0 for a in answers)
    assert all(a["risk_level"] in ("low", "medium", "high") for a in answers)
    assert all(a["is_anomaly"] == (a["risk_level"] == "high") for a in answers)

    hits: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    for pattern, answer in zip(df["fraud_pattern"].tolist(), answers, strict=True):
        if pattern is None:
            continue
        total[pattern] += 1
        top = answer["reasons"][0]
        hits[pattern] += top["feature"] in PATTERN_FEATURES[pattern]
    assert sum(total.values()) >= 20
    assert sum(hits.values()) / sum(total.values()) >= 0.8, {k: (hits[k], total[k]) for k in total}
    scores = np.array([a["anomaly_score"] for a in answers])
    fraud = df["is_fraud"].to_numpy() == 1
    assert scores[fraud].mean() > scores[~fraud].mean()  # frauds look more unusual than ordinary spending
    amount = next(r for a in answers for r in a["reasons"] if r["feature"] == "amount")
    assert " vs typical " in amount["text"] and isinstance(amount["typical"], float)
    # one profile per customer, under this test's prefix and the model's name
    assert len(profile_keys(profile_prefix)) == df["customer_id"].nunique()
    assert all(k.startswith(f"{profile_prefix}{MODEL}:".encode()) for k in profile_keys(profile_prefix))


def history(customer: str, n: int = 12, start: str = "2026-03-01T10:00:00+00:00") -> list[dict[str, Any]]:
    t0 = pd.Timestamp(start)
    return [
        {"transaction_id": f"{customer}-{i}", "customer_id": customer, "timestamp": (t0 + pd.Timedelta(hours=6 * i)).isoformat(),
         "amount": 40.0 + i % 3, "currency": "EUR", "merchant_category": "grocery", "merchant_id": "grocery-1",
         "channel": "pos", "country": "DE", "device_id": "d-1"}
        for i in range(n)
    ]


def test_bad_transactions_get_a_defined_answer_or_a_422_naming_the_field(
    anomaly_model: Any, anomaly_platform: Any, profile_prefix: str, live_app: Any, sv: Any
) -> None:
    server = live_app(anomaly_settings(sv, profile_prefix), anomaly_platform)
    past = history("c-bad")
    with server.client() as c:
        assert predict(c, sv, past).status_code == 200
        before = profile_keys(profile_prefix)
        assert len(before) == 1

        # a refund: scored (is_refund), the profile unchanged
        refund = {**past[-1], "transaction_id": "r-1", "amount": -25.0,
                  "timestamp": (pd.Timestamp(past[-1]["timestamp"]) + pd.Timedelta(hours=1)).isoformat()}
        r = predict(c, sv, refund)
        assert r.status_code == 200, r.text
        answer = r.json()["predictions"][0]
        assert answer["features"]["is_refund"] == 1.0 and answer["features"]["amount_eur"] == 25.0
        assert profile_keys(profile_prefix) == before

        # out of order: scored at its own time, folded in; the latest timestamp stays
        late = {**past[3], "transaction_id": "late-1", "amount": 41.0}
        r = predict(c, sv, late)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["features"]["seconds_since_last"] == 0.0
        after_late = profile_keys(profile_prefix)
        assert after_late != before

        # bad fields: 422 naming the field, no profile changed
        future = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=2)).isoformat()
        cases = [
            ({**past[0], "timestamp": future}, "timestamp", "in the future"),
            ({**past[0], "timestamp": "yesterday-ish"}, "timestamp", "not a timestamp"),
            ({**past[0], "currency": "DOGE"}, "currency", ""),
            ({**past[0], "amount": "12,50"}, "amount", ""),
            ({**past[0], "customer_id": ""}, "customer_id", ""),
        ]
        for record, field, words in cases:
            r = predict(c, sv, record)
            assert r.status_code == 422, (field, r.status_code, r.text)
            assert field in r.text and words in r.text, r.text

        # a batch with one bad record is refused whole: no profile changes, not even for the good ones
        fresh = history("c-batch-new", n=3)
        batch = [*fresh, {**past[0], "customer_id": "c-bad", "timestamp": future}]
        r = predict(c, sv, batch)
        assert r.status_code == 422 and "body.3.timestamp" in r.text, r.text
        assert profile_keys(profile_prefix) == after_late

        # a customer never seen: cold start, profile-free features, and the reason says so
        r = predict(c, sv, history("c-never-seen", n=1))
        answer = r.json()["predictions"][0]
        assert answer["cold_start"] is True and answer["features"]["history_count"] == 0.0
        assert answer["reasons"][0]["feature"] == "history_count" and "first transaction" in answer["reasons"][0]["text"]

        # a stored profile that cannot be read: answered without it (and says so), the evidence left in place
        r_ = redis.Redis.from_url(REDIS_URL)
        corrupt_key = f"{profile_prefix}{MODEL}:c-corrupt"
        r_.set(corrupt_key, "[42]")
        r = predict(c, sv, history("c-corrupt", n=1))
        assert r.status_code == 200, r.text
        answer = r.json()["predictions"][0]
        assert answer["profile_available"] is False and answer["reasons"][0]["feature"] == "profile"
        assert r_.get(corrupt_key) == b"[42]"
        r_.close()

        # a transaction far from the customer's habits: the reasons compare with the typical values
        odd = {**past[-1], "transaction_id": "odd-1", "amount": 2340.0, "country": "BR", "device_id": "d-x",
               "timestamp": (pd.Timestamp(past[-1]["timestamp"]) + pd.Timedelta(hours=5)).isoformat()}
        answer = predict(c, sv, odd).json()["predictions"][0]
        texts = [x["text"] for x in answer["reasons"]]
        assert any(t.startswith("amount 2,340.00 vs typical 4") for t in texts), texts
        assert answer["risk_level"] in ("medium", "high") and answer["anomaly_score"] > 0.5


def test_with_redis_unreachable_the_api_answers_without_profiles_and_says_so(
    anomaly_model: Any, anomaly_platform: Any, profile_prefix: str, live_app: Any, tcp_proxy: Any, sv: Any
) -> None:
    proxy = tcp_proxy("redis://127.0.0.1:6379")
    url = f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}"
    server = live_app(anomaly_settings(sv, profile_prefix, url=url), anomaly_platform)
    past = history("c-outage")
    with server.client() as c:
        assert predict(c, sv, past).status_code == 200
        m = c.get("/metrics").text
        assert sv.metric(m, "ledgerline_serving_model_component", model=MODEL, key="profile_store_available") == 1.0
        assert sv.metric(m, "ledgerline_serving_model_component", model=MODEL, key="profile_fallback_answers_total") == 0.0

        proxy.cut()
        nxt = {**past[-1], "transaction_id": "o-1", "timestamp": (pd.Timestamp(past[-1]["timestamp"]) + pd.Timedelta(hours=6)).isoformat()}
        t0 = time.perf_counter()
        r = predict(c, sv, [nxt, {**nxt, "transaction_id": "o-2"}])
        assert r.status_code == 200, r.text
        assert time.perf_counter() - t0 < 5  # one short socket timeout, not one per record
        for answer in r.json()["predictions"]:
            assert answer["profile_available"] is False and answer["cold_start"] is False
            assert answer["features"]["history_count"] == 0.0
            assert answer["reasons"][0]["feature"] == "profile" and "unavailable" in answer["reasons"][0]["text"]
            assert 0.0 <= answer["anomaly_score"] <= 1.0
        ready = c.get("/ready")
        assert ready.status_code == 200 and ready.json()["degraded"] == [f"{MODEL}: profile_store unavailable"]
        assert ready.json()["models"][MODEL]["components"]["profile_store_available"] == 0.0
        m = c.get("/metrics").text
        assert sv.metric(m, "ledgerline_serving_model_component", model=MODEL, key="profile_store_available") == 0.0
        assert sv.metric(m, "ledgerline_serving_model_component", model=MODEL, key="profile_fallback_answers_total") == 2.0
        # an unusual amount is still an alert without the profile (the profile-free forest answers)
        large = predict(c, sv, {**nxt, "transaction_id": "o-3", "amount": 2500.0}).json()["predictions"][0]
        assert large["profile_available"] is False and large["is_anomaly"] is True and large["risk_level"] == "high"
        assert len(profile_keys(profile_prefix)) == 1  # the outage changed nothing in Redis

        proxy.restore()  # profiles are used again once the store's retry pause (5 s) has passed
        deadline = time.monotonic() + 20
        while True:
            back = predict(c, sv, {**nxt, "transaction_id": "o-4"}).json()["predictions"][0]
            if back["profile_available"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert back["profile_available"] is True and back["features"]["history_count"] == float(len(past))
        assert c.get("/ready").json()["degraded"] == []


def test_openapi_shows_the_anomaly_answer_and_the_transaction_record(
    anomaly_model: Any, anomaly_platform: Any, profile_prefix: str, live_app: Any, sv: Any
) -> None:
    server = live_app(anomaly_settings(sv, profile_prefix), anomaly_platform)
    with server.client() as c:
        doc = c.get("/openapi.json").json()
        example = c.get("/v1/models", headers=sv.HEADERS).json()["models"][MODEL]["example"]
    schemas = doc["components"]["schemas"]
    answer = schemas["AnomalyPrediction"]["properties"]
    assert {"prediction_id", "model", "version", "anomaly_score", "is_anomaly", "risk_level", "reasons",
            "profile_available", "cold_start"} <= set(answer)
    assert "AnomalyReason" in schemas
    op = doc["paths"][f"/v1/models/{MODEL}/predict"]["post"]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["predictions"]["items"]["$ref"].endswith("/AnomalyPrediction")
    record_ref = op["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]["$ref"]
    record = schemas[record_ref.rsplit("/", 1)[-1]]
    assert {"customer_id", "timestamp", "amount", "currency"} <= set(record["properties"])
    assert "amount_log_z" not in record["properties"]  # the raw transaction, not the feature vector
    assert set(example) >= {"customer_id", "timestamp", "amount"}
    assert not profile_keys(profile_prefix)  # no warm-up with made-up records


def test_two_workers_export_the_profile_store_state_of_both_workers_on_metrics(
    anomaly_model: Any, fresh_app_db_url: str, profile_prefix: str, tcp_proxy: Any, tmp_path: Path, sv: Any
) -> None:
    proxy = tcp_proxy("redis://127.0.0.1:6379")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINE_")},
        "LEDGERLINE_TRACKING_URI": anomaly_model.settings.tracking_uri,
        "LEDGERLINE_APP_DB_URL": fresh_app_db_url,
        "LEDGERLINE_HOME": str(tmp_path / "home"),
        "LEDGERLINE_SERVING_MODELS": MODEL,
        "LEDGERLINE_SERVING_API_KEYS": sv.API_KEY,
        "LEDGERLINE_SERVING_ADMIN_KEY": sv.ADMIN_KEY,
        "LEDGERLINE_TRANSACTION_ANOMALY_PROFILE_STORE_URL": f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}",
        "LEDGERLINE_TRANSACTION_ANOMALY_PROFILE_KEY_PREFIX": profile_prefix,
        "PROMETHEUS_MULTIPROC_DIR": "",
    }
    log = tmp_path / "serve.log"
    proc, url = sv.start_serve(env, log, ("--workers", "2"), timeout=240)
    try:
        time.sleep(3)  # both workers loaded
        key = "ledgerline_serving_model_component"
        proxy.cut()
        sent = 0
        # new connections spread over the workers; each answer says no profile was used
        for i in range(40):
            with httpx.Client(base_url=url, timeout=30) as c:
                rec = history(f"c-w{i}", n=1)[0]
                r = c.post(f"/v1/models/{MODEL}/predict", json=rec, headers=sv.HEADERS)
                assert r.status_code == 200, r.text
                assert r.json()["predictions"][0]["profile_available"] is False
                sent += 1
        for _ in range(10):  # whichever worker answers /metrics, the totals are both workers'
            with httpx.Client(base_url=url, timeout=30) as c:
                text = c.get("/metrics").text
            assert sv.metric(text, key, model=MODEL, key="profile_fallback_answers_total") == float(sent), text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_batch_whose_customer_changes_meanwhile_is_scored_again_on_the_new_profile(profile_prefix: str) -> None:
    from families.transaction_anomaly.behaviour import Profile, parse_transaction, update
    from families.transaction_anomaly.profiles import RedisProfileStore

    store = RedisProfileStore(REDIS_URL, prefix=profile_prefix)
    other = redis.Redis.from_url(REDIS_URL)
    txns = [("c-race", parse_transaction(r)) for r in history("c-race", n=3)] + [
        ("c-calm", parse_transaction(r)) for r in history("c-calm", n=2)]
    meanwhile = Profile()
    other_request = {**history("c-race", n=1, start="2026-02-01T08:00:00+00:00")[0], "transaction_id": "c-race-other"}
    update(meanwhile, parse_transaction(other_request))
    calls: list[tuple[str, int]] = []

    def scorer(p: Profile, txn: Any, f: dict[str, float], ok: bool) -> int:
        if not calls:  # another request writes c-race's profile between our read and our write
            other.set(store.key("c-race"), meanwhile.to_json())
        calls.append((txn.device, p.n))
        return p.n

    try:
        out = store.score_many(txns, scorer)
        # c-race's three records were scored again, one by one, on top of the profile written meanwhile
        assert [s.result for s in out] == [1, 2, 3, 0, 1]
        assert store.get("c-race").n == 4 and store.get("c-calm").n == 2
        assert store.stats()["profile_update_conflicts_total"] == 1.0
    finally:
        other.close()
        store.close()
