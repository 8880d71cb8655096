"""Hot swap: when @champion moves, the service loads and warms the new version off the request
path and swaps atomically; under continuous load no request fails and answers switch version.

The promotion here is what the promotion gate does when a challenger passes: it moves the
@champion alias (``set_registered_model_alias``); both versions were trained through the
real pipeline beforehand, so the load phase lasts seconds rather than a training run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_promotion_under_continuous_load_fails_no_request_and_switches_the_version(
    credit_v1_v2: Any, platform: Any, live_app: Any, sv: Any
) -> None:
    v1, v2 = credit_v1_v2.v1, credit_v1_v2.v2
    server = live_app(sv.serving_settings(poll_interval_seconds=0.5), platform)
    record = sv.example_record(server)
    stop = threading.Event()
    seen: list[list[tuple[int, str | None]]] = [[] for _ in range(4)]

    def hammer(i: int) -> None:
        body: Any = record if i % 2 else [record] * 5
        with server.client() as c:
            while not stop.is_set():
                r = c.post(f"/v1/models/{sv.MODEL}/predict", json=body, headers=sv.HEADERS)
                versions = {p["version"] for p in r.json()["predictions"]} if r.status_code == 200 else {None}
                assert len(versions) == 1  # one request, one version, even mid-swap
                seen[i].append((r.status_code, versions.pop()))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        credit_v1_v2.set_champion(v2)  # the promotion
        wait_for(lambda: all(s and s[-1][1] == v2 for s in seen), timeout=90, what="every client answered by v2")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        credit_v1_v2.set_champion(v1)
    statuses = [status for s in seen for status, _ in s]
    assert statuses and set(statuses) == {200}, f"{len([x for x in statuses if x != 200])} failed requests"
    for s in seen:  # each client switches once, v1 -> v2, and never goes back
        versions = [v for _, v in s]
        first_v2 = versions.index(v2)
        assert first_v2 > 0 and set(versions[:first_v2]) == {v1} and set(versions[first_v2:]) == {v2}
    with server.client() as c:
        assert c.get("/ready").json()["models"][sv.MODEL]["version"] == v2
        metrics = c.get("/metrics").text
    assert sv.metric(metrics, "ledgerline_serving_model_swaps_total", model=sv.MODEL) == 1
    assert sv.metric(metrics, "ledgerline_serving_model_loaded", model=sv.MODEL, version=v2) == 1
    assert sv.metric(metrics, "ledgerline_serving_model_loaded", model=sv.MODEL, version=v1) == 0


def test_admin_reload_picks_up_a_moved_champion_at_once(credit_v1_v2: Any, platform: Any, live_app: Any, sv: Any) -> None:
    v1, v2 = credit_v1_v2.v1, credit_v1_v2.v2
    server = live_app(sv.serving_settings(poll_interval_seconds=3600, reload_wait_seconds=120), platform)
    record = sv.example_record(server)
    try:
        with server.client() as c:
            credit_v1_v2.set_champion(v2)
            report = c.post("/admin/reload", headers=sv.ADMIN).json()
            assert report["models"][sv.MODEL] == {"version": v2, "changed": True, "previous": v1}
            answer = c.post(f"/v1/models/{sv.MODEL}/predict", json=record, headers=sv.HEADERS).json()
            assert answer["predictions"][0]["version"] == v2
            credit_v1_v2.set_champion(v1)  # a rollback is a move too
            assert c.post("/admin/reload", headers=sv.ADMIN).json()["models"][sv.MODEL]["version"] == v1
            assert c.get("/version").json()["models"][sv.MODEL] == v1
    finally:
        credit_v1_v2.set_champion(v1)
