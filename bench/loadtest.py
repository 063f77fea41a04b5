"""Run the Locust load test headless against a local nextword server.

Usage::

    python -m bench.loadtest [--users 32] [--run-time 30s] [--reports reports] [--host URL]

Without ``--host`` it starts the service (``NEXTWORD_MODEL``) on a free
loopback port and stops it afterwards. Writes ``loadtest_*.csv`` and
``loadtest.html`` under ``--reports``; exits non-zero if any request failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

from bench.launcher import REPO, Server


def run_locust(host: str, users: int, run_time: str, reports: Path) -> int:
    reports.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO / "locustfile.py"),
        "--headless",
        "--host",
        host,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        run_time,
        "--csv",
        str(reports / "loadtest"),
        "--html",
        str(reports / "loadtest.html"),
        "--only-summary",
        "--stop-timeout",
        "10",
    ]
    return subprocess.run(command, cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--run-time", default="30s")
    parser.add_argument("--reports", type=Path, default=REPO / "reports")
    parser.add_argument("--host", help="an already running server (loopback only); default: start one")
    args = parser.parse_args(argv)
    if args.host and not args.host.startswith(("http://127.", "http://localhost", "http://[::1]")):
        parser.error("load tests only target this machine (127.0.0.0/8, localhost or [::1])")
    with nullcontext(None) if args.host else Server() as server:
        code = run_locust(args.host or server.url, args.users, args.run_time, args.reports)
    print(f"reports in {args.reports}/ (loadtest_stats.csv, loadtest.html); locust exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
