"""The operators' view is consistent with the code: Prometheus config and rules are valid (promtool),
and the Grafana dashboards and alert rules reference only metrics the services export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra" / "prometheus"
DASHBOARDS = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "time", "or", "and", "on", "without",
    "le", "avg", "count", "irate", "offset", "bool", "unless", "ignoring", "group_left", "group_right",
}


def exported_metrics() -> set[str]:
    """Every series name the serving API's /metrics can carry, Prometheus' own ``up``, and the
    Airflow metrics the statsd-exporter mapping produces."""
    from serving.metrics import ServingMetrics
    from serving.monitoring_metrics import METRICS

    names = {"up"}
    for metric in ServingMetrics().registry.collect():
        for sample_suffix in ("", "_total", "_bucket", "_count", "_sum", "_created"):
            names.add(metric.name + sample_suffix)
    names |= set(METRICS)
    for mapping in yaml.safe_load((PROM / "statsd_mapping.yml").read_text())["mappings"]:
        names |= {mapping["name"] + s for s in ("", "_count", "_sum")}
    return names


def referenced(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"by \([^)]*\)", "", expr)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {t for t in tokens if t not in PROMQL_WORDS and not t.startswith("$")}


def test_one_dashboard_serves_every_model_through_its_model_variable_and_uses_only_exported_metrics() -> None:
    assert [p.name for p in DASHBOARDS] == ["ledgerline.json"]
    dash = json.loads(DASHBOARDS[0].read_text())
    (variable,) = dash["templating"]["list"]
    # the model names come from the serving metrics themselves: a new family's models appear without an edit
    assert variable["name"] == "model" and variable["type"] == "query"
    assert variable["definition"] == "label_values(ledgerline_serving_predictions_total, model)"
    assert variable["multi"] and variable["includeAll"]
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    assert len(exprs) >= 6
    unknown = set().union(*(referenced(e) for e in exprs)) - exported_metrics()
    assert not unknown, f"the dashboard references metrics nothing exports: {sorted(unknown)}"
    per_model = [e for e in exprs if "ledgerline_serving_prediction" in e or "ledgerline_monitoring" in e]
    assert per_model and all("$model" in e for e in per_model)
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("traffic", "latency", "errors", "score", "log", "drift"):
        assert topic in titles, f"the dashboard has no {topic} panel"
    score = next(p for p in dash["panels"] if p["title"].lower().startswith("score distribution"))
    assert score["repeat"] == "model"  # one score histogram per model: families' scores are not comparable


def test_alert_rules_reference_only_exported_metrics_and_cover_the_issue() -> None:
    rules = yaml.safe_load((PROM / "rules" / "ledgerline.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert {"LedgerlineHighErrorRate", "LedgerlineLatencyP99AboveSLO", "LedgerlineAppDatabaseDown",
            "LedgerlinePredictionLogBacklog", "LedgerlineDriftDetected", "LedgerlinePerformanceDegraded",
            "LedgerlineRetrainFailed"} <= alerts.keys()
    unknown = set().union(*(referenced(e) for e in alerts.values())) - exported_metrics()
    assert not unknown, f"alert rules reference metrics nothing exports: {sorted(unknown)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with Debian's prometheus (make test installs it)")
def test_promtool_accepts_the_config_and_the_rules() -> None:
    rules = subprocess.run(["promtool", "check", "rules", str(PROM / "rules" / "ledgerline.yml")],
                           capture_output=True, text=True, timeout=60)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(["promtool", "check", "config", "--syntax-only", str(PROM / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60, cwd=PROM)
    assert config.returncode == 0, config.stdout + config.stderr
