"""A trained model as saved in the BentoML store, and loading it back.

A store entry holds everything needed to serve without the training code::

    model.ts        TorchScript module (the models.rnn contract)
    vocab.json      the word list; the id of a word is its position
    tokenizer.json  TokenizerSettings
    config.json     ModelConfig

Training writes these (training.export); the service and
``training.evaluate`` read them here.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

import bentoml
import torch

from models.rnn import ModelConfig
from models.tokenizer import Tokenizer, TokenizerSettings
from models.vocab import Vocabulary

MODEL_FILE = "model.ts"
VOCAB_FILE = "vocab.json"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"


@dataclass
class ModelBundle:
    tag: bentoml.Tag
    model: torch.jit.ScriptModule
    vocab: Vocabulary
    tokenizer: Tokenizer
    config: ModelConfig
    metadata: dict[str, Any]


def load_bundle(stored: str | bentoml.Model, device: torch.device) -> ModelBundle:
    """Load a store entry (a tag like ``nextword:latest`` or a resolved model) onto ``device``."""
    if isinstance(stored, str):
        try:
            stored = bentoml.models.get(stored)
        except bentoml.exceptions.NotFound as error:
            raise LookupError(f"model {stored!r} is not in the BentoML store: {error}") from None

    def read_json(name: str) -> Any:
        with open(stored.path_of(name), encoding="utf-8") as file:
            return json.load(file)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        model = torch.jit.load(stored.path_of(MODEL_FILE), map_location=device)
    model.eval()
    return ModelBundle(
        tag=stored.tag,
        model=model,
        vocab=Vocabulary(read_json(VOCAB_FILE)),
        tokenizer=Tokenizer(TokenizerSettings(**read_json(TOKENIZER_FILE))),
        config=ModelConfig(**read_json(CONFIG_FILE)),
        metadata=dict(stored.info.metadata),
    )
