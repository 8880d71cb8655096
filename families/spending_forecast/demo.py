"""The forecasting family in ``make demo``: one series' forecast from the precomputed table, its first
actual sent back as feedback (answers and feedback are per series: the family's own routes), and the
``ledgerline forecast`` command under the training summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apps.demo_steps import DemoClient, DemoShown, DemoStep


class ForecastDemo(DemoStep):
    def training_lines(self, model_name: str) -> list[str]:
        return [f"    forecast file      ledgerline forecast {model_name} --horizon 12 --output forecast.csv"]

    def run(self, client: DemoClient, name: str, info: Mapping[str, Any]) -> DemoShown:
        route = f"/v1/models/{name}/forecast"
        body = {"series_id": info["example"]["series_id"], "horizon": 6, "interval": 0.8}
        answer = client.post(route, body, f"the example forecast of {name}")
        first = answer["points"][0]
        lines = [f"  {name:<20} v{answer['version']} ({info['family']}): {body['series_id']} {first['ds']} "
                 f"yhat={first['yhat']:.1f} [{first['yhat_lower']:.1f}, {first['yhat_upper']:.1f}] (80 %)"]
        actual = {"actuals": [{"series_id": body["series_id"], "ds": first["ds"], "y": round(first["yhat"], 2)}]}
        client.post(f"/v1/models/{name}/actuals", actual, f"the example actuals of {name}")
        lines.append(f"  {'':<20} actual for {first['ds']} recorded (POST /v1/models/{name}/actuals)")
        return DemoShown(lines, client.curl(route, body))


DEMO = ForecastDemo()
