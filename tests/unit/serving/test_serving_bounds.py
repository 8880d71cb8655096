"""Bounds on serving inputs that need no server: validation work, keys, the tracking-server probe."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from families.credit_risk.data import credit_spec
from serving.errors import BatchTooLarge, InvalidRecords, RegistryUnavailable
from serving.loader import probe_tracking_server
from serving.schema import RecordSchema, columns_from
from serving.settings import ServingSettings
from serving.watcher import health_request

SPEC = credit_spec()
SIGNATURE = [{"name": c.name, "type": "double" if c.kind == "numeric" else "string"} for c in SPEC.columns]
GOOD = {
    "annual_income": 58000.0, "debt_to_income": 18.5, "revolving_utilization": 0.42, "delinquencies_2y": 0,
    "inquiries_6m": 1, "employment_length_years": 4.0, "loan_amount": 12000, "term_months": 36,
    "purpose": "car", "home_ownership": "rent",
}
LIMIT = 16 * 1024 * 1024


@pytest.fixture
def schema() -> RecordSchema:
    return RecordSchema("credit-risk", columns_from(SIGNATURE, SPEC), max_rows=5000)


def _timed_error(schema: RecordSchema, body: bytes) -> tuple[Exception, float]:
    t0 = time.perf_counter()
    with pytest.raises((InvalidRecords, BatchTooLarge)) as exc:
        schema.parse(body)
    return exc.value, time.perf_counter() - t0


def test_a_16_mib_batch_of_records_with_1000_unknown_keys_is_refused_quickly_with_50_errors(schema: RecordSchema) -> None:
    one = json.dumps({**GOOD, **{f"x{i:03d}": 0 for i in range(1000)}}, separators=(",", ":")).encode()
    body = b"[" + b",".join([one] * ((LIMIT - 2) // (len(one) + 1))) + b"]"
    exc, seconds = _timed_error(schema, body)
    assert isinstance(exc, InvalidRecords)
    assert len(exc.errors) == 51 and exc.errors[-1]["type"] == "truncated"
    assert exc.errors[0] == {"field": "body[0].x000", "message": "Extra inputs are not permitted", "type": "extra_forbidden"}
    assert "annual_income" in str(exc)  # the message names the fields to send
    assert seconds < 2, f"{seconds:.2f}s"  # was 52 s; generous for a loaded machine


def test_one_record_with_a_million_unknown_keys_is_refused_before_it_is_parsed(schema: RecordSchema) -> None:
    body = json.dumps({f"k{i}": 0 for i in range(1_000_000)}).encode()
    exc, seconds = _timed_error(schema, body)
    assert isinstance(exc, InvalidRecords) and len(exc.errors) <= 51
    assert exc.errors[0]["field"] == "body.k0"
    assert seconds < 2, f"{seconds:.2f}s"  # was 52 s; generous for a loaded machine


@pytest.mark.parametrize(
    ("outer", "item", "error"),
    [
        (b"[]", b"{}", BatchTooLarge),  # millions of records
        (b"[]", b"[]", BatchTooLarge),  # millions of arrays
        (b"[]", b"1", InvalidRecords),  # millions of values
        (b"[[]]", b"1", InvalidRecords),  # millions of values in one record
        (b"{}", b'"k":1', InvalidRecords),  # millions of keys in one record
    ],
)
def test_floods_of_records_or_values_are_refused_by_count_before_parsing(
    schema: RecordSchema, outer: bytes, item: bytes, error: type[Exception]
) -> None:
    half = len(outer) // 2
    body = outer[:half] + b",".join([item] * (LIMIT // (len(item) + 1))) + outer[half:]
    exc, seconds = _timed_error(schema, body)
    assert isinstance(exc, error)
    assert seconds < 2, f"{seconds:.2f}s"  # was 52 s; generous for a loaded machine


def test_5000_empty_records_get_50_errors_in_milliseconds(schema: RecordSchema) -> None:
    exc, seconds = _timed_error(schema, json.dumps([{}] * 5000).encode())
    assert isinstance(exc, InvalidRecords)
    assert len(exc.errors) == 51 and exc.errors[0] == {"field": "body[0].annual_income", "message": "Field required", "type": "missing"}
    assert seconds < 0.25, f"{seconds * 1000:.0f} ms"  # was 0.7 s


def test_5000_invalid_records_stop_after_50_errors_across_records(schema: RecordSchema) -> None:
    bad = {**GOOD, "purpose": "boat", "annual_income": "x"}
    exc, seconds = _timed_error(schema, json.dumps([GOOD, *[bad] * 4999]).encode())
    assert isinstance(exc, InvalidRecords)
    fields = [e["field"] for e in exc.errors]
    assert fields[:4] == ["body[1].annual_income", "body[1].purpose", "body[2].annual_income", "body[2].purpose"]
    assert len(fields) == 51 and exc.errors[-1]["type"] == "truncated"
    assert seconds < 0.2


def test_a_full_valid_batch_is_still_accepted(schema: RecordSchema) -> None:
    assert len(schema.parse(json.dumps([GOOD] * 5000).encode())) == 5000


def test_colons_and_commas_inside_text_values_do_not_count_as_keys() -> None:
    text = RecordSchema("notes", columns_from([{"name": "note", "type": "string"}, {"name": "x", "type": "double"}], None), max_rows=2)
    value = ":,{[" * 50
    body = json.dumps([{"note": value, "x": 1.0}, {"x": 2.0, "note": "a:b"}]).encode()
    assert body.count(b":") > 4  # the quick bound is exceeded, so the exact scan runs
    assert text.parse(body) == [{"note": value, "x": 1.0}, {"note": "a:b", "x": 2.0}]


# --------------------------------------------------------------------------- keys


def test_short_api_or_admin_keys_are_refused_with_how_to_make_one() -> None:
    with pytest.raises(ValidationError, match="api key #2 has 1 characters; keys need at least 16.*secrets.token_urlsafe"):
        ServingSettings(api_keys=["a-long-enough-api-key", "k"], admin_key="a-long-enough-admin-key")
    with pytest.raises(ValidationError, match="admin_key has 5 characters"):
        ServingSettings(api_keys=["a-long-enough-api-key"], admin_key="admin")


def test_an_admin_key_equal_to_an_api_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="admin_key equals one of the api_keys"):
        ServingSettings(api_keys=["first-long-api-key-1", "shared-long-key-0042"], admin_key="shared-long-key-0042")


def test_ledgerline_serve_with_a_one_character_key_exits_2_with_an_error_line(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEDGERLINE_")},
        "LEDGERLINE_HOME": str(tmp_path),
        "LEDGERLINE_SERVING_API_KEYS": "k",
        "LEDGERLINE_SERVING_ADMIN_KEY": "an-admin-key-long-enough",
    }
    cli = Path(sys.executable).parent / "ledgerline"
    done = subprocess.run([str(cli), "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert "api key #1 has 1 characters" in line and "LEDGERLINE_SERVING_API_KEYS" in line
    assert "an-admin-key-long-enough" not in done.stderr


# --------------------------------------------------------------------------- tracking-server probe


def test_credentials_in_the_tracking_uri_become_a_basic_auth_header() -> None:
    url, headers = health_request("http://ml%40ops:p%3Ass@tracking.internal:5000/")
    assert url == "http://tracking.internal:5000/health"
    assert base64.b64decode(headers["Authorization"].removeprefix("Basic ")) == b"ml@ops:p:ss"
    assert health_request("http://tracking:5000") == ("http://tracking:5000/health", {})


def test_mlflow_tracking_username_and_password_are_used_without_credentials_in_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    _, headers = health_request("https://tracking")
    assert headers == {"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()}


@pytest.fixture
def basic_auth_server() -> Iterator[str]:
    """A loopback HTTP server whose /health needs basic auth ``admin:s3cr3t``, like MLflow's auth app."""
    expected = "Basic " + base64.b64encode(b"admin:s3cr3t").decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            ok = self.path == "/health" and self.headers.get("Authorization") == expected
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(b"OK" if ok else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_probe_passes_with_credentials_in_the_uri_and_never_shows_the_password(basic_auth_server: str) -> None:
    probe_tracking_server(f"http://admin:s3cr3t@{basic_auth_server}", timeout=5)
    with pytest.raises(RegistryUnavailable) as exc:
        probe_tracking_server(f"http://admin:wrong-pw@{basic_auth_server}", timeout=5)
    assert "401" in str(exc.value) or "Unauthorized" in str(exc.value)
    assert "wrong-pw" not in str(exc.value) and "admin:***@" in str(exc.value)
