"""The character-level model end to end: trained in the test session, saved, served over HTTP.

The known answer of the project's first design note: trained on ``hello``
repeated, the model reads ``hell`` and predicts ``ello``.
"""

from __future__ import annotations

from collections.abc import Iterator

import bentoml
import httpx
import pytest
import torch

from models.bundle import load_bundle
from tests.conftest import serving, train_tiny
from tests.http_calls import generate, predict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hello_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    text = "hello hello hello\n" * 450
    return train_tiny(text, tmp_path_factory.mktemp("hello"), "nextword-hello", level="char", epochs=3)


@pytest.fixture(scope="module")
def hello(hello_model: str) -> Iterator[httpx.Client]:
    with serving(hello_model) as client:
        yield client


def test_hell_predicts_ello(hello_model: str) -> None:
    bundle = load_bundle(hello_model, torch.device("cpu"))
    assert bundle.tokenizer.characters and "h" in bundle.vocab.index and len(bundle.vocab) < 12
    ids = [bundle.vocab.line_break_id, *bundle.vocab.encode(bundle.tokenizer.tokenize("hell"))]
    logits, _ = bundle.model(torch.tensor([ids]), bundle.model.zero_state(1))
    greedy = logits[0, 1:].argmax(-1).tolist()  # the prediction after each of h, e, l, l
    assert "".join(bundle.vocab.decode(greedy)) == "ello"


def test_the_store_records_the_level(hello_model: str) -> None:
    stored = bentoml.models.get(hello_model)
    assert stored.info.labels["level"] == "char" and stored.info.metadata["level"] == "char"
    assert 0 < stored.info.metadata["test_bits_per_character"] < 1


def test_generate_samples_characters(hello: httpx.Client) -> None:
    (greedy, stopped, stopped_greedy) = generate(
        hello,
        {"prompt": "hell", "max_new_tokens": 13, "temperature": 0},
        {"prompt": "hello hel", "max_new_tokens": 30, "seed": 3, "stop": ["o h"]},
        {"prompt": "hello hel", "max_new_tokens": 30, "temperature": 0, "stop": ["o h"]},
    )
    assert greedy["text"] == "o hello hello" and greedy["tokens"][:2] == ["o", " "]
    assert stopped["finish_reason"] == "stop" and stopped["text"].endswith("o h")  # stop strings match text
    assert stopped_greedy["text"] == "lo h"


def test_predict_next_answers_words(hello: httpx.Client) -> None:
    after_word, after_space, completing, empty = predict(
        hello,
        {"text": "hello hello", "top_k": 3},
        {"text": "hello ", "top_k": 3},
        {"text": "hello hel", "top_k": 3, "complete": True},
        {"text": "", "top_k": 3},
    )
    for answer in (after_word, after_space, completing, empty):
        probabilities = [p["probability"] for p in answer["predictions"]]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    assert after_space["predictions"][0]["word"] == "hello" and after_space["predictions"][0]["probability"] > 0.8
    assert after_word["predictions"][0]["word"] == "hello"  # after a space the model always writes
    assert after_word["line_break_probability"] > 0.05  # a line holds three words
    assert completing["fragment"] == "hel" and completing["predictions"][0]["word"] == "hello"
    assert completing["line_break_probability"] is None and completing["matching_words"] is None
    assert empty["predictions"][0]["word"] == "hello" and after_space["tokens"] == 6
