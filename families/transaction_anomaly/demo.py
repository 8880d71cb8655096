"""The anomaly family in ``make demo``: customer profiles in the machine's Redis (db 0, the default key
prefix) when it answers, else in the API's memory, and the demo says so."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from apps.demo_steps import DemoStep
from families.transaction_anomaly.settings import PREFIX

logger = logging.getLogger(__name__)


class AnomalyDemo(DemoStep):
    def serving_env(self, redis_url: str | None) -> tuple[dict[str, str], list[str]]:
        if redis_url is not None:
            return {f"{PREFIX}PROFILE_STORE_URL": redis_url}, []
        note = ("  note                 Redis does not answer on 127.0.0.1:6379: anomaly profiles are kept in the "
                "API's memory (lost on restart); start Redis and run the demo again to keep them")
        return {f"{PREFIX}PROFILE_STORE_URL": "memory"}, [note]

    def example(self, name: str, info: Mapping[str, Any]) -> Any:
        """The served example as a known customer's next purchase: the busiest customer of the champion's
        training window, an hour after its last transaction there, so the answer shows the go-live profile
        (its history) instead of a cold start. The served example when the window cannot be read."""
        example = dict(info["example"])
        try:
            from ledgerline.settings import Settings
            from training.history import training_data

            data = training_data(Settings(), name, str(info["version"]), info.get("run_id"))
            roles = data.spec.roles
            customer_col, time_col = roles.get("customer"), roles.get("timestamp")
            if not customer_col or not time_col or customer_col not in example or time_col not in example:
                return example
            frame = data.frame
            customer = frame[customer_col].astype(str).value_counts().index[0]
            last = pd.to_datetime(frame.loc[frame[customer_col].astype(str) == customer, time_col], utc=True).max()
        except Exception as exc:  # noqa: BLE001 - the demo goes on with the served example
            logger.warning("the anomaly demo sends the served example (no known customer): %s", exc)
            return example
        example[customer_col] = customer
        example[time_col] = (last + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if spec_id := data.spec.id_column:
            example[spec_id] = f"demo-{customer}-next"
        return example


DEMO = AnomalyDemo()
