"""The Locust load test runs headless, writes its reports, and fails on failed requests."""

import csv
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.launcher import REPO

pytestmark = pytest.mark.slow


def loadtest(host: str, reports: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "bench.loadtest",
        "--host",
        host,
        "--users",
        "8",
        "--run-time",
        "5s",
        "--reports",
        str(reports),
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def stats(reports: Path) -> dict[str, dict[str, str]]:
    with open(reports / "loadtest_stats.csv") as file:
        return {row["Name"]: row for row in csv.DictReader(file)}


def test_loadtest_against_the_server(server, tmp_path: Path) -> None:
    run = loadtest(server.url, tmp_path)
    assert run.returncode == 0, run.stderr
    rows = stats(tmp_path)
    assert int(rows["/predict_next"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert (tmp_path / "loadtest.html").stat().st_size > 0


class Unavailable(BaseHTTPRequestHandler):
    """A server that answers every request 503."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(503)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_loadtest_fails_when_requests_fail(tmp_path: Path) -> None:
    """Every answer is a 503: the run completes, counts the requests failed, and exits 1 (not a crash)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = loadtest(f"http://127.0.0.1:{server.server_port}", tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 1, run.stderr
    rows = stats(tmp_path)
    assert int(rows["Aggregated"]["Failure Count"]) == int(rows["Aggregated"]["Request Count"]) > 0
