"""SIGTERM with requests in flight on every endpoint: each one admitted completes, then the server exits cleanly.

This is how Kubernetes stops a pod (docs/operations.md): the server stops
taking connections and finishes what it holds, each request bounded by the
request timeout, which the pod's grace period outlasts (tests/unit/deploy).
Each request here sends half its body, and the rest only after the signal,
so it is in flight at the signal for certain, whatever this machine's speed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench.launcher import Server
from tests.http_calls import metric_samples

pytestmark = pytest.mark.slow

LONG = {"prompt": "The game was", "max_new_tokens": 2000, "temperature": 0}  # greedy: never ends early
BATCH = [{"text": "the game was released in", "top_k": 3}] * 64
HEADERS = {"content-type": "application/json"}


def held_body(body: dict, gate: threading.Event) -> Iterator[bytes]:
    """The body in two parts, the second once ``gate`` opens."""
    data = json.dumps(body).encode()
    yield data[: len(data) // 2]
    assert gate.wait(60), "the test never opened the gate"
    yield data[len(data) // 2 :]


def post(url: str, path: str, body: dict, gate: threading.Event) -> tuple[int, list]:
    response = httpx.post(url + path, content=held_body(body, gate), headers=HEADERS, timeout=120)
    return response.status_code, response.json()


def stream(url: str, body: dict, gate: threading.Event) -> tuple[int, dict]:
    with httpx.stream(
        "POST", url + "/generate_stream", content=held_body(body, gate), headers=HEADERS, timeout=120
    ) as r:
        events = [json.loads(line.removeprefix("data: ")) for line in r.iter_lines() if line]
    return r.status_code, events[-1]


def in_progress(client: httpx.Client) -> float:
    """BentoML's requests in progress on the API's routes (the family must be on /metrics)."""
    samples = metric_samples(client, "bentoml_service_request_in_progress")
    return sum(sample.value for sample in samples if sample.labels.get("endpoint", "").startswith("/"))


def test_sigterm_lets_every_request_in_flight_finish_and_then_exits_0(tiny_model_tag: str) -> None:
    env = {"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_MAX_NEW_TOKENS": "2000"}
    server = Server(env=env).wait_ready()
    gate = threading.Event()
    try:
        with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=server.url, timeout=60) as client:
            generations = [pool.submit(post, server.url, "/generate", {"inputs": [LONG]}, gate) for _ in range(2)]
            streamed = pool.submit(stream, server.url, {"inputs": [LONG]}, gate)
            predicted = pool.submit(post, server.url, "/predict_next", {"inputs": BATCH}, gate)
            deadline = time.monotonic() + 60  # a guard against a stuck server, not a measurement
            while in_progress(client) < 4:
                assert time.monotonic() < deadline, "the four requests never arrived"
                time.sleep(0.02)
            server.process.send_signal(signal.SIGTERM)
            gate.set()  # the rest of each body, after the signal
            for generation in generations:
                status, answers = generation.result()
                assert status == 200 and len(answers[0]["tokens"]) == 2000
            status, final = streamed.result()
            assert status == 200 and final["generated_tokens"] == 2000
            status, answers = predicted.result()
            assert status == 200 and len(answers) == 64
        try:
            assert server.process.wait(timeout=120) == 0, server.output()
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit after its requests finished:\n{server.output()}")
        assert "Traceback" not in server.output(limit=None)
    finally:
        gate.set()
        server.stop()
