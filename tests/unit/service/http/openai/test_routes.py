"""The /v1 and tokenizer routes' own logic: which paths they take, how a bad body is refused, and
the model card, against hand-written expectations."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from starlette.requests import Request

from service.engine.engine import Engine, EngineConfig
from service.http.openai.completions import CompletionError, Served
from service.http.openai.routes import is_routed_here, model_card, read_model
from service.http.openai.schemas import CompletionRequest


def request_with(body: bytes) -> Request:
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/v1/completions", "headers": []}, receive)


@pytest.mark.parametrize(
    ("path", "routed"),
    [
        ("/v1/completions", True),
        ("/v1/models/nextword", True),
        ("/v1/anything", True),  # every path under /v1/ is OpenAI's, answered in its shape
        ("/tokenize", True),
        ("/tokenizer_info", True),
        ("/predict_next", False),
        ("/v1", False),
        ("/metrics", False),
    ],
)
def test_the_routes_take_v1_and_the_tokenizer_paths_only(path: str, routed: bool) -> None:
    assert is_routed_here(path) is routed


def test_a_bad_body_is_refused_naming_its_first_field() -> None:
    with pytest.raises(CompletionError) as missing:
        asyncio.run(read_model(request_with(b'{"prompt": "a"}'), CompletionRequest))
    assert (missing.value.status, missing.value.param) == (400, "model")
    with pytest.raises(CompletionError) as wrong:
        asyncio.run(read_model(request_with(b'{"model": "m", "prompt": "a", "max_tokens": -1}'), CompletionRequest))
    assert (wrong.value.status, wrong.value.param) == (400, "max_tokens")
    read = asyncio.run(read_model(request_with(b'{"model": "m", "prompt": "a"}'), CompletionRequest))
    assert read.prompts() == ["a"]


def test_the_model_card_is_the_store_entry(tiny_model_tag: str) -> None:
    engine = Engine.inline(tiny_model_tag, EngineConfig())
    card = model_card(Served.of(engine, datetime(2026, 12, 7, tzinfo=UTC), asked_as="nextword"))
    assert card == {
        "id": str(engine.bundle.tag),
        "object": "model",
        "created": int(datetime(2026, 12, 7, tzinfo=UTC).timestamp()),
        "owned_by": "nextword",
        "metadata": engine.bundle.metadata,
    }
