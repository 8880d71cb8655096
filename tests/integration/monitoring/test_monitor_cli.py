"""``ledgerline monitor --json`` against a real mlflow server: stdout is one JSON document."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from apps.cli import main
from families.credit_risk.data import generate_loan_applications

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def test_monitor_json_prints_only_parseable_json_on_stdout_and_the_run_links_on_stderr(
    monitor_settings, prediction_log, monkeypatch, capfd
) -> None:
    prediction_log.log(generate_loan_applications(600, seed=7), start=NOW - timedelta(days=5), end=NOW - timedelta(hours=1))
    s = monitor_settings
    for var, value in {
        "TRACKING_URI": s.tracking_uri,
        "APP_DB_URL": s.resolved_app_db_url(),
        "DATA_DIR": str(s.data_dir),
        "HOME": str(s.home),
        "S3_ENDPOINT_URL": s.s3_endpoint_url,
    }.items():
        monkeypatch.setenv(f"LEDGERLINE_{var}", value)
    capfd.readouterr()

    code = main(["monitor", prediction_log.monitored.name, "--json", "--now", NOW.isoformat(), "--min-rows", "100"])

    out, err = capfd.readouterr()
    assert code == 0, err
    decision = json.loads(out)  # the whole of stdout, nothing before or after the document
    assert decision["model_name"] == prediction_log.monitored.name
    assert decision["evidence"]["drift"]["status"] in ("ok", "drift")
    assert "View run" in err and "View run" not in out
