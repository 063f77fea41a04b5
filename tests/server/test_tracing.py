"""Tracing: off by default, and then the API routes skip BentoML's OpenTelemetry middleware;
on (NEXTWORD_TRACING_SAMPLE_RATE > 0), every route is traced.

The middleware's request hook is what gives a response its X-BentoML-Request-ID
header, so the header tells whether a route went through it.
"""

from __future__ import annotations

import httpx
import pytest

from bench.launcher import Server

pytestmark = pytest.mark.slow

REQUEST_ID = "x-bentoml-request-id"
CALLS = [
    ("/predict_next", {"inputs": [{"text": "the"}]}),
    ("/generate", {"inputs": [{"prompt": "the", "max_new_tokens": 2}]}),
]


def test_tracing_off_skips_the_middleware_on_the_api_routes(client: httpx.Client) -> None:
    for path, body in CALLS:
        response = client.post(path, json=body)
        assert response.status_code == 200 and REQUEST_ID not in response.headers, path


def test_tracing_on_traces_every_route(tiny_model_tag: str) -> None:
    env = {"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_TRACING_SAMPLE_RATE": "1"}
    with Server(env=env) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for path, body in CALLS:
            response = client.post(path, json=body)
            assert response.status_code == 200 and REQUEST_ID in response.headers, path
