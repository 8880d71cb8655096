"""The CLI when a service it needs is down or wants credentials: one ``error:`` line, exit 2, no password."""

from __future__ import annotations

import base64
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from apps.cli import check_tracking_server, main, masked_uri
from ledgerline.errors import LedgerlineError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_database_that_is_down_is_one_line_naming_it_without_its_password(monkeypatch, capsys):
    port = _closed_port()
    monkeypatch.setenv("LEDGERLINE_APP_DB_URL", f"postgresql+psycopg2://postgres:sekret@127.0.0.1:{port}/x")
    assert main(["ledger", "credit-risk"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the app database at postgresql+psycopg2://postgres:***@127.0.0.1:")
    assert "Connection refused" in err and "sekret" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


class _AuthHealth(BaseHTTPRequestHandler):
    expected = "Basic " + base64.b64encode(b"bob:s3cret").decode()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        ok = self.path == "/health" and self.headers.get("Authorization") == self.expected
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def auth_server():
    server = HTTPServer(("127.0.0.1", 0), _AuthHealth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_tracking_uri_with_credentials_passes_the_health_check(auth_server):
    check_tracking_server(f"http://bob:s3cret@{auth_server}")  # sent as basic auth, as MLflow's client does
    check_tracking_server(f"http://bob:wrong@{auth_server}")  # 401: the server is there; MLflow says the rest


def test_an_unreachable_tracking_server_is_named_without_its_password():
    uri = f"http://bob:s3cret@127.0.0.1:{_closed_port()}"
    with pytest.raises(LedgerlineError) as info:
        check_tracking_server(uri)
    assert "bob:***@127.0.0.1" in str(info.value) and "s3cret" not in str(info.value)
    assert masked_uri("postgresql://u@h/db") == "postgresql://u@h/db"
