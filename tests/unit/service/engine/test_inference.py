"""The Predictor in process, on the tiny test model."""

from __future__ import annotations

import math

import pytest
import torch

from models.bundle import load_bundle
from models.tokenizer import Tokenizer, TokenizerSettings
from service.engine.inference import Predictor
from service.engine.state_cache import StateCache
from service.engine.types import FinishReason, GenerationRequest, NextWordQuery
from training.fresh_texts import evaluate_fresh_texts


def test_a_lower_casing_model_completes_case_insensitively(tiny_model_tag: str) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    bundle.tokenizer = Tokenizer(TokenizerSettings(lowercase=True))
    (answer,) = Predictor(bundle, torch.device("cpu")).predict_next([NextWordQuery("In The Fi", 5, complete=True)])
    assert answer["fragment"] == "fi" and answer["predictions"]
    assert all(p["word"].startswith("fi") for p in answer["predictions"])


TYPED = "The game was released in North America on the same day as the film"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_answers_from_cached_states_equal_cold_ones_as_a_person_types(tiny_model_tag: str, dtype: torch.dtype) -> None:
    """In the serving precision too (bfloat16 where the CPU has it): the cache stores states in the model's
    dtype, so a prefix resumed from one gets the cold run's answer, completions and generation included."""
    cpu = torch.device("cpu")
    bundle = load_bundle(tiny_model_tag, cpu, dtype)
    shape = (bundle.config.state_slots, bundle.config.num_layers, bundle.config.hidden_size)
    cached = Predictor(bundle, cpu, StateCache(2**20, shape, dtype, cpu))
    cold = Predictor(load_bundle(tiny_model_tag, cpu, dtype), cpu)
    words = TYPED.split()
    for n in range(1, len(words) + 1):
        text = " ".join(words[:n])
        for query in (NextWordQuery(text, 10), NextWordQuery(text + " ", 10), NextWordQuery(text[:-1], 5, True)):
            assert cached.predict_next([query]) == cold.predict_next([query]), query
    assert cached.cache.stats.hits >= len(words) - 1
    read_cached, read_cold = cached.take_tally(), cold.take_tally()
    assert read_cached.read == read_cold.read == read_cold.run  # both read the same; cold ran it all
    assert read_cached.read - read_cached.run == cached.cache.stats.tokens_saved > 0  # the rest came cached
    request = GenerationRequest(TYPED, max_new_tokens=12, temperature=0.9, seed=3)
    assert cached.generate([request]) == cold.generate([request])


def test_scoring_a_text_is_the_fresh_text_evaluation_of_it(tiny_model_tag: str) -> None:
    """``Predictor.score`` (echo with logprobs on /v1/completions) against ``training.fresh_texts``, the
    independent oracle: the same texts' perplexity from the training code's own forward pass."""
    cpu = torch.device("cpu")
    bundle = load_bundle(tiny_model_tag, cpu, torch.float32)
    predictor = Predictor(bundle, cpu)
    texts = ["The game was released in North America .", "He was born in", "the"]
    rows = [predictor.encode(text).ids for text in texts]
    scored = predictor.score(rows, top=3)
    for ids, entries in zip(rows, scored, strict=True):
        assert entries[0] is None and len(entries) == len(ids)  # nothing precedes the first id
        for token, entry in zip(ids[1:], entries[1:], strict=True):
            assert entry.id == token and len(entry.top) == 3
            assert predictor.vocab.unk_id not in dict(entry.top)  # no text spells it: never an alternative
            values = [value for _, value in entry.top]
            assert values == sorted(values, reverse=True) and entry.logprob <= values[0] + 1e-6
    alone = [predictor.score([ids], top=3)[0] for ids in rows]
    for together, single in zip(scored, alone, strict=True):  # padding in a batch changes no row
        assert [e and round(e.logprob, 4) for e in together] == [e and round(e.logprob, 4) for e in single]

    fresh = evaluate_fresh_texts(bundle.model, rows, bundle.vocab, cpu)
    total = sum(entry.logprob for entries in scored for entry in entries[1:])
    count = sum(len(ids) - 1 for ids in rows)
    assert math.exp(-total / count) == pytest.approx(fresh.perplexity, rel=1e-5)


def test_a_generated_tokens_logprobs_are_the_scores_of_the_text_it_makes(tiny_model_tag: str) -> None:
    cpu = torch.device("cpu")
    predictor = Predictor(load_bundle(tiny_model_tag, cpu, torch.float32), cpu)
    request = GenerationRequest("He was born in", max_new_tokens=8, temperature=0.9, seed=5, logprobs=2)
    (generation,) = predictor.generate([request])
    prompt = predictor.encode(request.prompt).ids
    ended = generation.finish_reason is FinishReason.EOS  # the end of the text has an entry too
    assert generation.logprobs is not None and len(generation.logprobs) == len(generation.ids) + ended
    end = [predictor.vocab.end_id] if ended else []
    (scored,) = predictor.score([prompt + list(generation.ids) + end], top=2)
    for made, entry in zip(generation.logprobs, scored[len(prompt) :], strict=True):
        assert made.id == entry.id
        assert made.logprob == pytest.approx(entry.logprob, abs=1e-4)
        assert [i for i, _ in made.top] == [i for i, _ in entry.top]
