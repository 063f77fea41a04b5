"""The Predictor in process, on the tiny test model."""

from __future__ import annotations

import pytest
import torch

from models.bundle import load_bundle
from models.tokenizer import Tokenizer, TokenizerSettings
from service.engine.inference import Predictor
from service.engine.state_cache import StateCache
from service.engine.types import GenerationRequest, NextWordQuery


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
    request = GenerationRequest(TYPED, max_new_tokens=12, temperature=0.9, seed=3)
    assert cached.generate([request]) == cold.generate([request])
