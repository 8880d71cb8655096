"""A family's part in ``make demo``: what it sends to the running API and how it shows the answer.

The demo loops over the registry; for each served model it asks the family's step
(``families/<stem>/demo.py`` exposing ``DEMO``, an instance of :class:`DemoStep` or a subclass;
a family without one gets :class:`DemoStep` itself). The default sends the model's served example
to ``POST /v1/models/{name}/predict``, shows the answer as the family flattens it, and sends one
feedback (label 0, the negative class). A family overrides :meth:`DemoStep.serving_env` (what its serving needs, e.g. a
profile store), :meth:`DemoStep.feedback` (another label),
:meth:`DemoStep.after_feedback` (lines after it) or :meth:`DemoStep.run` (other routes altogether).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledgerline.errors import LedgerlineError

#: ``call(method, path, key, body) -> (status, JSON body)``; status 0 when the API did not answer
Call = Callable[[str, str, str | None, Any], tuple[int, Any]]


@dataclass(frozen=True)
class DemoClient:
    """The demo's API: where it runs, the demo key, its log (for error messages) and the HTTP call."""

    url: str
    api_key: str
    log: str
    call: Call

    def post(self, path: str, body: Any, what: str, ok: Sequence[int] = (200,)) -> Any:
        """POST ``body`` to ``path`` with the demo key; a status outside ``ok`` is an error naming ``what``."""
        code, answer = self.call("POST", path, self.api_key, body)
        if code not in ok:
            raise LedgerlineError(f"{what} failed ({code}: {answer}); see {self.log}")
        return answer

    def curl(self, path: str, body: Any) -> str:
        """A ready-to-paste curl of the same request."""
        return (f"    curl -s -X POST {self.url}{path} -H {shlex.quote('X-API-Key: ' + self.api_key)} "
                f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}")


@dataclass(frozen=True)
class DemoShown:
    """What one model's step printed, and the curl that repeats its request."""

    lines: list[str]
    curl: str


def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


class DemoStep:
    """The default step: the served example through ``/predict``, its answer, one feedback."""

    def training_lines(self, model_name: str) -> list[str]:
        """Extra lines under the model's training summary (e.g. a family's own command); none by default."""
        return []

    def serving_env(self, redis_url: str | None) -> tuple[dict[str, str], list[str]]:
        """Environment the family's serving needs in the demo, given the machine's Redis (None: it does not
        answer), and notes for the demo to print (e.g. a fallback); nothing by default."""
        return {}, []

    def run(self, client: DemoClient, name: str, info: Mapping[str, Any]) -> DemoShown:
        """Send the example of ``name`` (``info``: its entry of ``GET /v1/models``), show the answer, send feedback."""
        from serving.family import get_serving_family

        example = self.example(name, info)
        predict = f"/v1/models/{name}/predict"
        answer = client.post(predict, example, f"the example prediction of {name}")
        first = answer["predictions"][0]
        flat = get_serving_family(info["family"]).flatten(first)
        shown = ", ".join(f"{k}={short(v)}" for k, v in flat.items())
        lines = [f"  {name:<20} v{first['version']} ({info['family']}): {shown}"]
        label, what = self.feedback(first, info)
        fb = client.post("/v1/feedback", {"prediction_id": first["prediction_id"], "label": label},
                         f"the example feedback of {name}", ok=(200, 201))
        lines.append(f"  {'':<20} feedback {what} {fb['status']} for prediction {first['prediction_id']}")
        lines += self.after_feedback(client, name, info, example)
        return DemoShown(lines, client.curl(predict, example))

    def example(self, name: str, info: Mapping[str, Any]) -> Any:
        """The request the demo sends: the model's served example by default."""
        return info["example"]

    def feedback(self, answer: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[object, str]:
        """The label sent back for the example's answer, and how the demo names it."""
        return 0, "label 0 (the negative class)"

    def after_feedback(self, client: DemoClient, name: str, info: Mapping[str, Any], example: Any) -> list[str]:
        """Lines after the feedback (e.g. the same request again, now answered differently); none by default."""
        return []


def demo_step(family: str) -> DemoStep:
    """The demo step of a registered family: its ``families/<stem>/demo.py`` ``DEMO``, else the default."""
    from ledgerline.families import family_module

    module = family_module(family, "demo")
    step = getattr(module, "DEMO", None) if module is not None else None
    if step is None:
        return DemoStep()
    if not isinstance(step, DemoStep):
        raise LedgerlineError(f"{module.__name__}.DEMO is not an apps.demo_steps.DemoStep")  # type: ignore[union-attr]
    return step
