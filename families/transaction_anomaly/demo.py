"""The anomaly family in ``make demo``: customer profiles in the machine's Redis (db 0, the default key
prefix) when it answers, else in the API's memory, and the demo says so."""

from __future__ import annotations

from apps.demo_steps import DemoStep
from families.transaction_anomaly.settings import PREFIX


class AnomalyDemo(DemoStep):
    def serving_env(self, redis_url: str | None) -> tuple[dict[str, str], list[str]]:
        if redis_url is not None:
            return {f"{PREFIX}PROFILE_STORE_URL": redis_url}, []
        note = ("  note                 Redis does not answer on 127.0.0.1:6379: anomaly profiles are kept in the "
                "API's memory (lost on restart); start Redis and run the demo again to keep them")
        return {f"{PREFIX}PROFILE_STORE_URL": "memory"}, [note]


DEMO = AnomalyDemo()
