"""BentoML's own ``SyncHTTPClient``, as a new user calls the service: our three routes stay usable from it."""

from __future__ import annotations

import json

import bentoml
import httpx
import pytest

from bench.launcher import Server
from tests.http_calls import generate, predict

pytestmark = pytest.mark.slow


def test_sync_http_client_calls_the_three_routes(server: Server, client: httpx.Client) -> None:
    with bentoml.SyncHTTPClient(server.url) as bento:
        assert {"predict_next", "generate", "generate_stream"} <= set(bento.endpoints)
        inputs = [{"text": "the game was rel", "top_k": 3, "complete": True}, {"text": "He was born in"}]
        assert bento.predict_next(inputs=inputs) == predict(client, *inputs)

        prompt = {"prompt": "He was born in", "max_new_tokens": 6, "temperature": 0.9, "seed": 4}
        (made,) = bento.generate(inputs=[prompt])
        assert made == generate(client, prompt)[0]

        streamed = "".join(bento.generate_stream(inputs=[prompt]))  # the SSE text, in pieces
        events = [json.loads(line[len("data: ") :]) for line in streamed.splitlines() if line]
        assert [event["token"] for event in events[:-1]] == made["tokens"]
        assert events[-1]["text"] == made["text"] and events[-1]["finish_reason"] == made["finish_reason"]
