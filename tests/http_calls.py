"""Small HTTP helpers shared by the tests that talk to a real server."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

HANG_GUARD_S = 60.0  # a condition not reached by then means the server is stuck


def predict(client: httpx.Client, *inputs: dict) -> list[dict]:
    """POST /predict_next with these inputs; asserts a 200 and returns the answers."""
    response = client.post("/predict_next", json={"inputs": list(inputs)})
    assert response.status_code == 200, response.text
    return response.json()


def generate(client: httpx.Client, *inputs: dict) -> list[dict]:
    """POST /generate with these inputs; asserts a 200 and returns the answers."""
    response = client.post("/generate", json={"inputs": list(inputs)})
    assert response.status_code == 200, response.text
    return response.json()


def scrape(client: httpx.Client) -> str:
    """``/metrics``' text; a failed scrape fails the test rather than reading as no samples."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, f"/metrics answered {answer.status_code}: {answer.text[:200]}"
    return answer.text


def metric(client: httpx.Client, name: str, labels: str = "") -> float:
    """One sample of ``/metrics``, summed across workers by the server.

    A failed scrape or a missing sample fails the test: read as 0, either would
    let a condition such as "== 0" pass without the server having said anything.
    """
    found = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", scrape(client), re.M)
    assert found, f"/metrics has no sample {name}{labels}"
    return float(found.group(1))


def metric_samples(client: httpx.Client, family: str) -> list[Sample]:
    """Every sample of a metric family on ``/metrics``; the family must be there."""
    families = {found.name: found for found in text_string_to_metric_families(scrape(client))}
    assert family in families, f"/metrics has no family {family}"
    return families[family].samples


def wait_for(condition: Callable[[], object], what: str = "condition", guard_s: float = HANG_GUARD_S) -> None:
    """Poll until ``condition()`` holds; the guard fails a stuck server instead of hanging the suite."""
    deadline = time.monotonic() + guard_s
    while not condition():
        assert time.monotonic() < deadline, f"never reached: {what}; the server is stuck"
        time.sleep(0.02)
