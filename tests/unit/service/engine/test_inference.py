"""The Predictor in process, on the tiny test model."""

from __future__ import annotations

import torch

from models.bundle import load_bundle
from models.tokenizer import Tokenizer, TokenizerSettings
from service.engine.inference import Predictor
from service.engine.types import NextWordQuery


def test_a_lower_casing_model_completes_case_insensitively(tiny_model_tag: str) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    bundle.tokenizer = Tokenizer(TokenizerSettings(lowercase=True))
    (answer,) = Predictor(bundle, torch.device("cpu")).predict_next([NextWordQuery("In The Fi", 5, complete=True)])
    assert answer["fragment"] == "fi" and answer["predictions"]
    assert all(p["word"].startswith("fi") for p in answer["predictions"])
