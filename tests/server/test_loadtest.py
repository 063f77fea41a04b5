"""The Locust load test runs headless, writes its reports, and fails on failed requests."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from bench.launcher import REPO, free_port

pytestmark = pytest.mark.slow


def loadtest(host: str, reports: Path) -> int:
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
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120).returncode


def test_loadtest_against_the_server(server, tmp_path: Path) -> None:
    assert loadtest(server.url, tmp_path) == 0
    with open(tmp_path / "loadtest_stats.csv") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    assert int(rows["/predict_next"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert (tmp_path / "loadtest.html").stat().st_size > 0


def test_loadtest_fails_when_requests_fail(tmp_path: Path) -> None:
    assert loadtest(f"http://127.0.0.1:{free_port()}", tmp_path) != 0
