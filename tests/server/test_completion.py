"""Completing a partly typed word over HTTP: ``"complete": true``."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from models.bundle import load_bundle
from models.tokenizer import Tokenizer
from tests.http_calls import generate, predict


def plain_distribution(client: httpx.Client, text: str) -> dict[str, float]:
    (answer,) = predict(client, {"text": text, "top_k": 100})
    return {p["word"]: p["probability"] for p in answer["predictions"]}


@pytest.mark.slow
def test_completions_are_the_matching_words_ranked_and_renormalized(client: httpx.Client, tiny_model_tag) -> None:
    context = "the first of the"
    plain = plain_distribution(client, context)
    word = next(w for w in plain if len(w) >= 3 and w.isalpha())
    fragment = word[:2]
    ask = {"text": f"{context} {fragment}", "top_k": 100, "complete": True, "correct_typos": False}
    (answer,) = predict(client, ask)
    vocab = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32).vocab
    matching = [w for w in vocab.words if w.startswith(fragment) and w not in ("<unk>", "<eos>")]
    assert answer["fragment"] == fragment and answer["matching_words"] == len(matching)
    assert answer["tokens"] == 4  # the text before the fragment
    words = [p["word"] for p in answer["predictions"]]
    assert word in words and all(w.startswith(fragment) for w in words)
    # The plain top 100 holds the likeliest matching words, so they lead the completions, in its order.
    expected = [w for w in plain if w.startswith(fragment)]
    assert words[: len(expected)] == expected
    mass = answer["matching_probability"]
    for p in answer["predictions"]:
        if p["word"] in plain:
            assert p["probability"] * mass == pytest.approx(plain[p["word"]], rel=1e-4)
    if len(matching) <= 100:
        assert sum(p["probability"] for p in answer["predictions"]) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.slow
def test_a_mistyped_fragment_is_offered_the_words_one_slip_away(client: httpx.Client, tiny_model_tag) -> None:
    """Over HTTP: two keys swapped in a word, and the word comes back as a correction after the
    exact matches; asked without correction, the answer has the exact matches only."""
    vocab = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32).vocab
    word = next(w for w in vocab.words if len(w) >= 6 and w.isalpha() and w.islower())
    typo = word[:2] + word[3] + word[2] + word[4:]
    corrected, exact = predict(
        client,
        {"text": f"the game was {typo}", "complete": True, "top_k": 5},
        {"text": f"the game was {typo}", "complete": True, "top_k": 5, "correct_typos": False},
    )
    assert word in [p["word"] for p in corrected["predictions"] if p["correction"]]
    assert corrected["fragment"] == exact["fragment"] == typo
    assert [p["word"] for p in corrected["predictions"] if not p["correction"]] == [
        p["word"] for p in exact["predictions"]
    ]
    assert not any(p["correction"] for p in exact["predictions"])


@pytest.mark.slow
def test_a_fragment_nothing_starts_with_gets_an_empty_list(client: httpx.Client) -> None:
    (answer,) = predict(client, {"text": "the game was zzqxj", "complete": True})
    assert answer["predictions"] == [] and answer["fragment"] == "zzqxj"
    assert answer["matching_words"] == 0 and answer["matching_probability"] == 0


@pytest.mark.slow
def test_completion_is_off_by_default_and_after_white_space(client: httpx.Client) -> None:
    (default,) = predict(client, {"text": "the game was rel"})
    assert default["fragment"] is None and default["matching_words"] is None and default["tokens"] == 4
    (spaced,) = predict(client, {"text": "the game was ", "complete": True})
    (plain,) = predict(client, {"text": "the game was "})
    assert spaced == plain and spaced["fragment"] is None


@pytest.mark.slow
def test_completion_rows_batch_with_ordinary_rows(client: httpx.Client) -> None:
    items = [
        {"text": "the game was", "top_k": 5},
        {"text": "the game was th", "complete": True, "top_k": 5},
        {"text": "He was born in", "top_k": 5},
        {"text": "in the s", "complete": True, "top_k": 5},
    ]
    alone = [predict(client, item)[0] for item in items]
    together = predict(client, *items)
    for one, batched in zip(alone, together, strict=True):
        assert [p["word"] for p in one["predictions"]] == [p["word"] for p in batched["predictions"]]
        assert one["fragment"] == batched["fragment"] and one["matching_words"] == batched["matching_words"]
        for a, b in zip(one["predictions"], batched["predictions"], strict=True):
            assert a["probability"] == pytest.approx(b["probability"], rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_complete_must_be_a_boolean(client: httpx.Client) -> None:
    response = client.post("/predict_next", json={"inputs": [{"text": "a", "complete": "yes"}]})
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"][-1] == "complete"


LONG_TEXT = "The game was released in North America on the same day as the film , and it sold well . " * 230


@pytest.mark.parametrize("keep", [1, 16, 128, 255])  # 255: with the fragment, the 256 a text may have
def test_truncate_reads_only_the_end_of_a_text_of_any_length(client: httpx.Client, keep: int) -> None:
    """20,000 characters, ten times the limit without truncate: the answer is the one for the text's
    last `keep` tokens alone, for the next word and for a completion (whose fragment is not counted)."""
    assert len(LONG_TEXT) > 20_000
    tokenizer = Tokenizer()
    tail = tokenizer.detokenize(tokenizer.tokenize(LONG_TEXT)[-keep:])
    (long,) = predict(client, {"text": LONG_TEXT, "truncate": keep, "top_k": 5})
    (short,) = predict(client, {"text": tail, "top_k": 5})
    assert long["truncated"] and not short["truncated"] and long["tokens"] == short["tokens"] == keep
    assert long["predictions"] == short["predictions"]
    typed = LONG_TEXT + "the ga"
    tail = tokenizer.detokenize(tokenizer.tokenize(typed)[-keep - 1 : -1]) + " ga"  # the window ends before "ga"
    (long,) = predict(client, {"text": typed, "truncate": keep, "complete": True})
    (short,) = predict(client, {"text": tail, "complete": True})
    assert long["tokens"] == keep and long["fragment"] == short["fragment"] == "ga"
    assert long["predictions"] == short["predictions"]


def test_truncate_reports_nothing_left_out_of_a_short_text(client: httpx.Client) -> None:
    (answer,) = predict(client, {"text": "the game was", "truncate": 3})
    (whole,) = predict(client, {"text": "the game was"})
    assert not answer["truncated"] and answer == whole
    assert client.post("/predict_next", json={"inputs": [{"text": LONG_TEXT}]}).status_code == 400  # over 2,000


def test_generate_continues_only_the_end_of_a_long_prompt_with_truncate(client: httpx.Client) -> None:
    """Greedy, a 20,000-character prompt read to its last 32 tokens continues as those tokens alone do,
    by /generate and by /generate_stream, whose final event says so too."""
    tokenizer = Tokenizer()
    tail = tokenizer.detokenize(tokenizer.tokenize(LONG_TEXT)[-32:])
    asked = {"prompt": LONG_TEXT, "truncate": 32, "max_new_tokens": 8, "temperature": 0}
    (long,) = generate(client, asked)
    (short,) = generate(client, {"prompt": tail, "max_new_tokens": 8, "temperature": 0})
    assert long["truncated"] and not short["truncated"] and long["prompt_tokens"] == short["prompt_tokens"] == 32
    # The same words; the long prompt ends in a space, so its continuation starts without one.
    assert long["tokens"] == short["tokens"] and long["text"] == short["text"].removeprefix(" ")
    stream = client.post("/generate_stream", json={"inputs": [asked]})
    final = json.loads([line for line in stream.text.splitlines() if line.startswith("data: ")][-1][6:])
    assert final["truncated"] and final["tokens"] == long["tokens"] and final["text"] == long["text"]
    refused = client.post("/generate", json={"inputs": [{"prompt": LONG_TEXT}]})
    assert refused.status_code == 400 and refused.json()["detail"][0]["loc"][-1] == "prompt"
