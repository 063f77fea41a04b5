"""NEXTWORD_WORKERS=2: both workers serve, their metrics add up, and /readyz and the typing page work.

Which worker answered is read from the state caches, one per worker: the
same text sent on many fresh connections misses once in each worker that
gets it, so the misses count the workers that served.
"""

from __future__ import annotations

import httpx
import pytest

from bench.launcher import Server
from tests.http_calls import metric

pytestmark = pytest.mark.slow

TEXT = "the game was released in"
REQUESTS = 64


def one_request(url: str) -> dict:
    """On a connection of its own: the kernel spreads new connections over the workers."""
    with httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/predict_next", json={"inputs": [{"text": TEXT, "top_k": 3}]})
        assert response.status_code == 200, response.text
        return response.json()[0]


def test_two_workers_both_serve_and_their_metrics_add_up(tiny_model_tag: str) -> None:
    env = {"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_WORKERS": "2"}
    with Server(env=env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/readyz").status_code == 200 and client.get("/livez").status_code == 200
        page = client.get("/demo/")
        assert page.status_code == 200 and "<textarea" in page.text
        read_before = metric(client, "nextword_prefix_tokens_total", '{endpoint="predict_next"}')
        run_before = metric(client, "nextword_tokens_processed_total", '{endpoint="predict_next"}')
        answers = [one_request(server.url) for _ in range(REQUESTS)]  # one at a time: one miss per worker
        assert all(answer == answers[0] for answer in answers)  # the same model in both workers
        read = metric(client, "nextword_prefix_tokens_total", '{endpoint="predict_next"}') - read_before
        run = metric(client, "nextword_tokens_processed_total", '{endpoint="predict_next"}') - run_before
        assert read == REQUESTS * (answers[0]["tokens"] + 1)  # every worker's count is in the sum; + line break
        misses = metric(client, "nextword_state_cache_misses_total")
        hits = metric(client, "nextword_state_cache_hits_total")
        assert misses == 2, "one worker served every request"  # one miss per worker, then hits
        assert hits + misses == REQUESTS
        assert run == read - metric(client, "nextword_state_cache_tokens_saved_total")  # the rest came cached
        assert server.output(limit=None).count("Service nextword initialized") == 2
