"""The asset-valuation family in ``make demo``: the example sale valued at the version's level and again at 90 %,
its realised price sent back as feedback (the value, not a class), and ``ledgerline score --interval`` under the
training summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apps.demo_steps import DemoClient, DemoStep


class AssetDemo(DemoStep):
    def training_lines(self, model_name: str) -> list[str]:
        return [f"    value a file       ledgerline score {model_name} --input sales.csv --output valued.csv --interval 0.9"]

    def feedback(self, answer: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[object, str]:
        """The realised value: here the estimate plus 4 % (a sale a little above it)."""
        realised = round(float(answer["prediction"]) * 1.04, -2)
        return realised, f"realised value {realised:,.0f}"

    def after_feedback(self, client: DemoClient, name: str, info: Mapping[str, Any], example: Any) -> list[str]:
        body = {**example, "interval": 0.9} if isinstance(example, dict) else example
        answer = client.post(f"/v1/models/{name}/predict", body, f"the 90 % interval of {name}")
        first = answer["predictions"][0]
        return [f"  {'':<20} at 90 %: {first['prediction']:,.0f} in [{first['prediction_lower']:,.0f}, "
                f"{first['prediction_upper']:,.0f}]"]


DEMO = AssetDemo()
