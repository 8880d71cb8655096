"""The categorisation family in ``make demo``: its feedback is a correction, which answers the next line
of that merchant at once (the same request again shows the rule answering)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apps.demo_steps import DemoClient, DemoStep


class CategoryDemo(DemoStep):
    def feedback(self, answer: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[object, str]:
        classes = (info.get("details") or {}).get("classes") or []
        label = next(c for c in classes if c != answer.get("model_category"))
        return label, f"correction '{label}'"

    def after_feedback(self, client: DemoClient, name: str, info: Mapping[str, Any], example: Any) -> list[str]:
        code, again = client.call("POST", f"/v1/models/{name}/predict", client.api_key, example)
        if code != 200:
            return []
        p = again["predictions"][0]
        return [f"  {'':<20} the same line again: category={p['category']} (source: {p['source']}); "
                f"rules: GET {client.url}/admin/models/{name}/corrections (admin key)"]


DEMO = CategoryDemo()
