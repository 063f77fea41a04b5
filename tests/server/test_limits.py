"""/predict_next at its limits: the in-flight bound (429), which also bounds the queue, and adaptive batching's 503.

Requests are held in flight by streams too long to end during the test, so
the bound is reached by count, not by how fast this machine is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from bench.launcher import Server
from tests.http_calls import metric, predict

pytestmark = pytest.mark.slow

ENDLESS = {"prompt": "The game was", "max_new_tokens": 100_000, "temperature": 0}


@contextmanager
def serve(tag: str, **env: str) -> Iterator[httpx.Client]:
    settings = {"NEXTWORD_MODEL": tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_MAX_NEW_TOKENS": "100000", **env}
    with Server(env=settings) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@contextmanager
def in_flight(client: httpx.Client) -> Iterator[None]:
    """One request held in flight: a stream whose first token has come, open until the block ends."""
    with client.stream("POST", "/generate_stream", json={"inputs": [ENDLESS]}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: dropping the iterator would close the connection
        assert next(lines).startswith('data: {"token"')
        yield


def streams_in_flight(client: httpx.Client) -> float:
    """BentoML's own count, taken outside its concurrency limit: zero once every stream's handler returned."""
    return metric(
        client,
        "bentoml_service_request_in_progress",
        '{endpoint="/generate_stream",runner_name="nextword",service_name="nextword",service_version="not available"}',
    )


def wait_for(condition) -> None:
    deadline = time.monotonic() + 60  # a guard against a stuck server, not a measurement
    while not condition():
        assert time.monotonic() < deadline, "condition never reached: the server is stuck"
        time.sleep(0.02)


def test_requests_past_the_concurrency_bound_get_429_and_the_bound_frees_up(tiny_model_tag: str) -> None:
    with serve(tiny_model_tag, NEXTWORD_MAX_CONCURRENCY="3") as client:
        with ExitStack() as held:
            for _ in range(3):
                held.enter_context(in_flight(client))
            with ThreadPoolExecutor(8) as pool:  # a burst: every one of them is over the bound
                answers = list(
                    pool.map(lambda _: client.post("/predict_next", json={"inputs": [{"text": "the"}]}), range(8))
                )
            assert [answer.status_code for answer in answers] == [429] * 8
            assert all(answer.json()["error"] for answer in answers)  # JSON, in the error shape's first field
            assert client.post("/generate", json={"inputs": [{"prompt": "the"}]}).status_code == 429
        wait_for(lambda: streams_in_flight(client) == 0)  # the held requests have left ...
        assert predict(client, {"text": "the"})[0]["predictions"]  # ... and there is room again


def test_adaptive_batching_refuses_what_would_miss_its_deadline_with_503(tiny_model_tag: str) -> None:
    """NEXTWORD_MAX_LATENCY_MS=1 with batches of 64 long texts: no CPU serves them within 1 ms."""
    text = " ".join(["the first game of the season was played in the city"] * 20)  # 220 tokens
    body = {"inputs": [{"text": text, "top_k": 5}] * 64}
    with serve(tiny_model_tag, NEXTWORD_BATCHING="adaptive", NEXTWORD_MAX_LATENCY_MS="1") as client:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: client.post("/predict_next", json=body), range(48)))
        statuses = {answer.status_code for answer in answers}
        assert 503 in statuses and statuses <= {200, 503}, statuses
        refused = next(answer for answer in answers if answer.status_code == 503)
        assert refused.headers["content-type"].startswith("application/json") and refused.json()["error"]
        assert client.get("/readyz").status_code == 200
