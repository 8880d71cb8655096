"""The demo's anomaly profile store: the machine's Redis when it answers, else memory (and the demo says so)."""

from __future__ import annotations

import socket

from apps.serve_demo import local_redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_demo_keeps_profiles_in_redis_when_redis_answers_on_the_machine():
    assert local_redis("127.0.0.1", 6379) == "redis://127.0.0.1:6379/0"


def test_the_demo_falls_back_to_memory_when_nothing_answers_on_the_redis_port():
    assert local_redis("127.0.0.1", _free_port()) is None
