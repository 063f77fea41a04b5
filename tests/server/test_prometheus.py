"""A real Prometheus (Debian's package) scraping the real server: every recording rule, every panel of the
Grafana dashboard and every Prometheus Adapter query returns data, so a renamed metric fails here, not on a
user's dashboard or autoscaler.

Needs ``prometheus`` (``.ci/run`` installs it); without it the test is skipped and says why, unless
``NEXTWORD_REQUIRE_PROMETHEUS=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from bench.launcher import REPO, Server, free_port
from tests.http_calls import wait_for
from tests.programs import require_program

pytestmark = pytest.mark.slow

RULES = REPO / "deploy" / "prometheus" / "nextword-rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "nextword-dashboard.json"
ADAPTER = REPO / "deploy" / "kubernetes" / "autoscaling" / "prometheus-adapter-values.yaml"
POD = {"namespace": "default", "pod": "nextword-0"}  # the labels Kubernetes' scrape jobs give a pod
PROMETHEUS_GUARD_S = 90.0  # scrapes and rule evaluations come each second


@pytest.fixture(scope="module")
def watched(tiny_model_tag: str) -> Iterator[tuple[Server, str]]:
    """The server (a small admission bound, so that a 429 can be met) and a Prometheus scraping it each second."""
    binary = require_program("prometheus", "prometheus", "NEXTWORD_REQUIRE_PROMETHEUS")
    env = {
        "NEXTWORD_MODEL": tiny_model_tag,
        "NEXTWORD_DEVICE": "cpu",
        "NEXTWORD_PRECISION": "float32",  # greedy decoding of the tiny model in float32 never ends its text
        "NEXTWORD_MAX_QUEUED_TOKENS": "4000",
        "NEXTWORD_MAX_NEW_TOKENS": "100000",
    }
    folder = Path(tempfile.mkdtemp(prefix="nextword-prometheus-"))
    with Server(env=env) as server:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "nextword",
                    "static_configs": [{"targets": [f"127.0.0.1:{server.port}"], "labels": POD}],
                }
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        command = [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        prometheus = f"http://127.0.0.1:{port}"
        try:
            wait_for(
                lambda: answers(f"{prometheus}/-/ready") and process.poll() is None,
                "Prometheus ready",
                PROMETHEUS_GUARD_S,
            )
            yield server, prometheus
        finally:
            process.terminate()
            process.wait(timeout=30)
            shutil.rmtree(folder, ignore_errors=True)


def query(prometheus: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, (expr, response.text)
    return response.json()["data"]["result"]


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


PROMPTS = ["The game was", "He was born in", "In 1990 the", "The film", "She said that", "It is a", "The song"]


def refused_by_admission(client: httpx.Client, prompt: str) -> bool:
    """While a long stream holds 100,000 outstanding tokens (past the 4,000 bound), a large request gets 429.

    The tiny model's greedy text may end early after some prompt (it is trained afresh each session), which
    would free the bound: then the caller tries another prompt.
    """
    endless = {"prompt": prompt, "max_new_tokens": 100_000, "temperature": 0}
    with client.stream("POST", "/generate_stream", json={"inputs": [endless]}) as response:
        next(response.iter_lines())
        full = [{"prompt": "the", "max_new_tokens": 256}] * 64
        return client.post("/generate", json={"inputs": full}).status_code == 429


def traffic(url: str, stop: threading.Event) -> None:
    """What the dashboard shows: typing, generation, scoring, a bad request, and a 429 from admission."""
    with httpx.Client(base_url=url, timeout=60) as client:
        assert any(refused_by_admission(client, prompt) for prompt in PROMPTS), "no 429 from admission"
        for i in itertools.count():
            if stop.is_set():
                break
            words = f"in {i} the game was released in north america on the same day".split()  # a fresh text
            for n in range(1, len(words) + 1):
                client.post("/predict_next", json={"inputs": [{"text": " ".join(words[:n]), "complete": True}]})
            client.post("/generate", json={"inputs": [{"prompt": "He was", "max_new_tokens": 8}]})
            client.post("/predict_next", json={"inputs": [{"text": "a", "top_k": 0}]})  # a 400
            time.sleep(0.05)


@pytest.fixture(scope="module")
def scraped(watched: tuple[Server, str]) -> Iterator[str]:
    """Prometheus, once it has scraped a few seconds of traffic and evaluated the rules over them."""
    server, prometheus = watched
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(server.url, stop), daemon=True)
    sender.start()
    try:
        wait_for(
            lambda: query(prometheus, 'count_over_time(up{job="nextword"}[1m]) >= 6'), "six scrapes", PROMETHEUS_GUARD_S
        )
        wait_for(
            lambda: query(prometheus, "nextword:state_cache_hit_ratio:rate5m"),
            "the rules evaluated",
            PROMETHEUS_GUARD_S,
        )
        yield prometheus
    finally:
        stop.set()
        sender.join(timeout=60)


def recording_rules() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]


def panel_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def adapter_queries() -> list[tuple[str, str]]:
    """Each rule's metricsQuery, rendered as the adapter renders it for one pod."""
    rules = yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]
    matchers = ",".join(f'{name}="{value}"' for name, value in POD.items())
    return [
        (
            rule["name"]["as"],
            rule["metricsQuery"]
            .replace("<<.Series>>", rule["seriesQuery"].split("{")[0])
            .replace("<<.LabelMatchers>>", matchers)
            .replace("<<.GroupBy>>", "pod"),
        )
        for rule in rules
    ]


def test_the_scrape_is_up(scraped: str) -> None:
    (up,) = query(scraped, 'up{job="nextword"}')
    assert up["value"][1] == "1" and up["metric"]["pod"] == POD["pod"]


@pytest.mark.parametrize("record", recording_rules())
def test_every_recording_rule_returns_data(scraped: str, record: str) -> None:
    assert query(scraped, record), record


@pytest.mark.parametrize(("title", "expr"), panel_queries(), ids=[title for title, _ in panel_queries()])
def test_every_dashboard_query_returns_data(scraped: str, title: str, expr: str) -> None:
    assert query(scraped, expr.replace("$__rate_interval", "1m")), (title, expr)


@pytest.mark.parametrize(("metric", "expr"), adapter_queries())
def test_every_autoscaling_metric_returns_a_value_per_pod(scraped: str, metric: str, expr: str) -> None:
    (sample,) = query(scraped, expr)
    assert sample["metric"] == {"pod": POD["pod"]}, metric


def test_the_cache_hit_ratio_tells_cached_typing_from_none(scraped: str) -> None:
    """Typing a text word by word resumes each prefix from the one before: most prefix tokens are cached."""
    ((_, ratio),) = [sample["value"] for sample in query(scraped, "nextword:state_cache_hit_ratio:rate5m")]
    assert 0.3 < float(ratio) < 1
