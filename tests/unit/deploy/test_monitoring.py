"""The Prometheus rules (promtool's own checks and unit tests) and the Grafana dashboard's shape.

That every rule and panel returns data from the real server is tests/server/test_prometheus.py's part.
Needs Debian's ``prometheus`` package for promtool; without it the promtool tests are skipped and say
why, unless ``NEXTWORD_REQUIRE_PROMETHEUS=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from bench.launcher import REPO
from service import metrics
from tests.programs import require_program

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "nextword-dashboard.json"


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = require_program("promtool", "prometheus", "NEXTWORD_REQUIRE_PROMETHEUS")
    return subprocess.run([binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", "nextword-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    tested = promtool("test", "rules", "nextword-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    groups = yaml.safe_load((PROMETHEUS / "nextword-rules.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((PROMETHEUS / "nextword-rules.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == tested


def test_the_dashboard_draws_the_services_own_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])
    shown = " ".join(exprs)
    ours = {m._name for m in vars(metrics).values() if hasattr(m, "_name") and m._name.startswith("nextword_")}
    drawn = {name for name in ours if re.search(rf"\b{name}(_total|_sum|_count|_bucket)?\b", shown)}
    # Every metric but the direct route's count and the unknown-token count is on a panel.
    assert ours - drawn <= {"nextword_direct_route_requests", "nextword_unknown_tokens"}, ours - drawn
