"""Model cards: one per registered version, Markdown and HTML, logged to its run
(``model_card/model_card.md`` and ``.html``), named by the version tag ``ledgerline.model_card`` and
linked from the version's description.

The card is family-neutral: the core writes lineage, the gate decision and the monitoring
plan; the family supplies its parts (:class:`CardParts`: intended use, metrics with bootstrap
confidence intervals on the holdout, known limitations, what monitoring watches, and sections of
its own, e.g. a credit model's outcomes per protected group) through ``TrainingFamily.card_parts``.
The parts are computed when the version is trained (``model_card/parts.json`` on the run); the
card is rendered when the gate has decided (it states the decision and its evidence).
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PARTS_PATH = "model_card/parts.json"
MARKDOWN_PATH = "model_card/model_card.md"
HTML_PATH = "model_card/model_card.html"
BOOTSTRAP_ROUNDS = 200
CONFIDENCE = 0.95


@dataclass
class CardParts:
    """What a family contributes to its versions' model cards."""

    intended_use: str
    #: metric -> (value, low, high) on the holdout; low/high: the bootstrap percentile interval
    metrics: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    limitations: list[str] = field(default_factory=list)
    #: what the monitoring jobs watch for this family, in words
    watched: list[str] = field(default_factory=list)
    #: extra sections: title -> Markdown
    sections: dict[str, str] = field(default_factory=dict)
    #: facts about the model shown under "Model" (kind, threshold and its policy, ...)
    model_facts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CardParts:
        return cls(
            intended_use=str(raw.get("intended_use", "")),
            metrics={k: (float(v[0]), float(v[1]), float(v[2])) for k, v in dict(raw.get("metrics", {})).items()},
            limitations=[str(x) for x in raw.get("limitations", [])],
            watched=[str(x) for x in raw.get("watched", [])],
            sections={str(k): str(v) for k, v in dict(raw.get("sections", {})).items()},
            model_facts={str(k): str(v) for k, v in dict(raw.get("model_facts", {})).items()},
        )


def bootstrap(
    n: int, metrics_of: Callable[[np.ndarray], Mapping[str, float]], *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """``metrics_of(all rows)`` with a percentile bootstrap interval per metric: ``metrics_of`` is
    called on ``rounds`` resamples (with replacement) of the row indices ``0..n-1``."""
    point = dict(metrics_of(np.arange(n)))
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(rounds):
        values = metrics_of(rng.integers(0, n, n))
        for k in samples:
            v = values.get(k)
            if v is not None and np.isfinite(v):
                samples[k].append(float(v))
    alpha = (1 - CONFIDENCE) / 2
    out = {}
    for k, v in point.items():
        s = samples[k]
        lo, hi = (float(np.quantile(s, alpha)), float(np.quantile(s, 1 - alpha))) if len(s) >= 10 else (float("nan"),) * 2
        out[k] = (float(v), lo, hi)
    return out


# --------------------------------------------------------------------------- the monitoring plan

#: the monitoring settings a card states (``LEDGERLINE_MONITORING_<NAME>``) and their defaults; a unit
#: test keeps these equal to :class:`monitoring.settings.MonitoringSettings` (training may not import it)
MONITORING_PLAN_DEFAULTS: dict[str, Any] = {
    "window_days": 7.0,
    "min_current_rows": 500,
    "psi_moderate": 0.10,
    "psi_significant": 0.25,
    "psi_drift_band": "significant",
    "drift_share": 0.5,
    "label_window_days": 30.0,
    "min_labelled_rows": 200,
    "cooldown_days": 3.0,
    "max_champion_age_days": None,
}


def monitoring_plan(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The monitoring settings in force for this process's environment (what the card states)."""
    env = os.environ if env is None else env
    plan = {}
    for key, default in MONITORING_PLAN_DEFAULTS.items():
        raw = env.get(f"LEDGERLINE_MONITORING_{key.upper()}")
        if raw is None:
            plan[key] = default
        elif isinstance(default, float) or (default is None and raw.lower() not in ("", "none", "null")):
            plan[key] = float(raw)
        elif isinstance(default, int) and not isinstance(default, bool):
            plan[key] = int(raw)
        else:
            plan[key] = None if raw.lower() in ("", "none", "null") else raw
    return plan


# --------------------------------------------------------------------------- rendering


def _fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.4f}"


def render_markdown(
    *,
    name: str,
    version: str,
    family: str,
    run: Mapping[str, Any],
    parts: CardParts,
    gate: Mapping[str, Any],
    plan: Mapping[str, Any],
) -> str:
    """The card as Markdown. ``run``: tags, params and metrics of the training run; ``gate``:
    ``decision``, ``reasons``, ``champion_version``, ``notes``."""
    tags, params, metrics = run.get("tags", {}), run.get("params", {}), run.get("metrics", {})
    lines = [f"# Model card: {name} v{version}", "",
             f"Family **{family}**; MLflow run `{run.get('run_id', '')}`.", "", "## Intended use", "", parts.intended_use, ""]
    lines += ["## Training data and lineage", ""]
    lineage = [
        ("snapshot", tags.get("ledgerline.snapshot_uri")),
        ("snapshot digest (SHA-256)", tags.get("ledgerline.snapshot_digest")),
        ("logical date", tags.get("ledgerline.logical_date")),
        ("trigger", tags.get("ledgerline.trigger")),
        ("rows (train / test)", f"{params.get('rows_train', '?')} / {params.get('rows_test', '?')}"),
        ("split seed", params.get("split_seed")),
        ("validation (Great Expectations)", f"{tags.get('ledgerline.validation', '?')}, "
         f"{int(metrics.get('validation_evaluated', 0))} expectations, "
         f"{int(metrics.get('validation_failed_expectations', 0))} failed (run artifact validation/)"),
        ("dataset spec", "run artifact data/spec.yaml"),
    ]
    lines += [f"- **{k}:** `{v}`" if k in ("snapshot", "snapshot digest (SHA-256)") else f"- **{k}:** {v}"
              for k, v in lineage if v is not None]
    lines += [""]
    if parts.model_facts:
        lines += ["## Model", ""] + [f"- **{k}:** {v}" for k, v in parts.model_facts.items()] + [""]
    lines += ["## Metrics on the holdout", "",
              f"Point estimates with {CONFIDENCE:.0%} bootstrap percentile intervals ({BOOTSTRAP_ROUNDS} resamples of the test rows).", "",
              "| metric | value | 95% interval |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(v)} | [{_fmt(lo)}, {_fmt(hi)}] |" for k, (v, lo, hi) in parts.metrics.items()]
    lines += [""]
    for title, body in parts.sections.items():
        lines += [f"## {title}", "", body, ""]
    decision = gate.get("decision") or "pending"
    lines += ["## Gate decision", "", f"**{decision}**" + (
        f" (compared with champion v{gate['champion_version']} on this version's holdout)"
        if gate.get("champion_version") not in (None, "none") else " (no champion to compare with)"), ""]
    lines += [f"- {r}" for r in gate.get("reasons", [])] + [f"- note: {n}" for n in gate.get("notes", [])] + [""]
    lines += ["## Known limitations", ""] + [f"- {x}" for x in parts.limitations] + [""]
    lines += ["## Monitoring plan", ""] + [f"- {x}" for x in parts.watched]
    lines += [
        f"- drift: predictions of the last {plan['window_days']:g} days against the training snapshot (at least "
        f"{plan['min_current_rows']} rows); a feature drifts at PSI >= {plan['psi_significant' if plan['psi_drift_band'] == 'significant' else 'psi_moderate']:g} "
        f"({plan['psi_drift_band']} band; moderate from {plan['psi_moderate']:g}); the data drifts when a share "
        f"of {plan['drift_share']:g} of the columns does (Evidently)",
        f"- live performance: labelled predictions (labels may take {plan['label_window_days']:g} days; at least "
        f"{plan['min_labelled_rows']} rows) against the offline test metrics above",
        f"- a drift or performance decision triggers the retrain DAG; cooldown {plan['cooldown_days']:g} days between retrains"
        + (f"; a champion older than {plan['max_champion_age_days']:g} days is retrained" if plan.get("max_champion_age_days") else ""),
        "",
    ]
    return "\n".join(lines)


_INLINE = [(re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"), (re.compile(r"`([^`]+)`"), r"<code>\1</code>")]


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


def markdown_to_html(markdown: str, title: str) -> str:
    """HTML of the card's Markdown (headings, paragraphs, bullet lists, tables, bold, code): a
    self-contained page with no external assets (it opens offline)."""
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, data = rows[0], [r for r in rows[1:] if not all(set(c) <= {"-", ":"} for c in r)]
            body.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                        + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in data)
                        + "</tbody></table>")
            continue
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
        i += 1
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.45}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}"
             "code{background:#f4f4f4;padding:0 .2rem}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>")


def gate_of(decision: Any) -> dict[str, Any]:
    """The card's view of a :class:`training.gate.GateDecision`."""
    return {
        "decision": "PROMOTED to @champion" if decision.passed else "REJECTED",
        "reasons": list(decision.reasons),
        "notes": list(getattr(decision, "notes", []) or []),
        "champion_version": decision.champion_version,
    }


def parts_json(parts: CardParts) -> str:
    return json.dumps(parts.to_dict(), allow_nan=True)


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A Markdown table (for a family's sections)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_card(settings: Any, name: str, version: str, gate: Mapping[str, Any]) -> str | None:
    """Render the card of ``name`` v``version`` with ``gate`` (see :func:`gate_of`), log it to the
    version's run, tag the version and link it from the description. Returns the Markdown path,
    or None when the run has no card parts (a version trained before cards existed)."""
    import tempfile
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from ledgerline import lineage
    from ledgerline.registry import client, describe_version, set_version_tags

    c = client(settings)
    mv = c.get_model_version(name, str(version))
    run_id = mv.run_id or mv.tags.get(lineage.RUN_ID)
    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            parts = CardParts.from_dict(json.loads(Path(c.download_artifacts(run_id, PARTS_PATH, tmp)).read_text()))
        except (MlflowException, OSError):
            return None
    run = c.get_run(run_id)
    summary = {"run_id": run_id, "tags": dict(run.data.tags), "params": dict(run.data.params), "metrics": dict(run.data.metrics)}
    family = mv.tags.get(lineage.FAMILY, "?")
    md = render_markdown(name=name, version=str(version), family=family, run=summary, parts=parts, gate=gate, plan=monitoring_plan())
    c.log_text(run_id, md, MARKDOWN_PATH)
    c.log_text(run_id, markdown_to_html(md, f"Model card: {name} v{version}"), HTML_PATH)
    set_version_tags(c, name, str(version), {lineage.MODEL_CARD: MARKDOWN_PATH})
    link = (f"**Model card:** [{HTML_PATH}]({settings.tracking_uri.rstrip('/')}/#/experiments/"
            f"{run.info.experiment_id}/runs/{run_id}/artifacts) (run artifacts `{MARKDOWN_PATH}`, `{HTML_PATH}`).")
    current = c.get_model_version(name, str(version)).description or ""
    paragraphs = [p for p in current.split("\n\n") if p and not p.startswith("**Model card:**")]
    describe_version(c, name, str(version), "\n\n".join([*paragraphs, link]))
    return MARKDOWN_PATH
