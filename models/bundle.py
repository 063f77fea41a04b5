"""A trained model as saved in the BentoML store, and loading it back.

A store entry holds everything needed to serve without the training code::

    model.ts        TorchScript module (the models.rnn contract), float32, not frozen
    vocab.json      the word list; the id of a word is its position
    tokenizer.json  TokenizerSettings
    config.json     ModelConfig

Training writes these (training.export); the service and
``training.evaluate`` read them here. The module is stored unfrozen so that
loading can cast it to the serving precision first and freeze it after:
freezing turns the weights into graph constants, which no cast reaches.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from typing import Any

import bentoml
import torch
from torch import Tensor, nn

from models.rnn import ModelConfig
from models.tokenizer import Tokenizer, TokenizerSettings
from models.vocab import Vocabulary

MODEL_FILE = "model.ts"
VOCAB_FILE = "vocab.json"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
SERVING_METHODS = ["zero_state", "encode", "decode"]  # kept by freezing, beside forward


@dataclass
class ModelBundle:
    tag: bentoml.Tag
    model: torch.jit.ScriptModule
    vocab: Vocabulary
    tokenizer: Tokenizer
    config: ModelConfig
    metadata: dict[str, Any]
    dtype: torch.dtype  # the precision the model computes in


def check_entry(stored: bentoml.Model) -> None:
    """Raise ValueError naming the file if a store entry is incomplete or corrupt.

    Cheap (no torch): every file is there, the JSON files parse, and model.ts,
    a zip archive, is complete with every member's CRC right. The server runs
    it before it starts any worker, so a truncated model stops it at once.
    """
    for name in (MODEL_FILE, VOCAB_FILE, TOKENIZER_FILE, CONFIG_FILE):
        path = os.path.realpath(stored.path_of(name))  # the file itself, not a link to its store
        try:
            if name == MODEL_FILE:
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    raise ValueError(f"{path}: archive member {bad} is corrupt")
            else:
                with open(path, encoding="utf-8") as file:
                    json.load(file)
        except FileNotFoundError:
            raise ValueError(f"{path} is missing") from None
        except zipfile.BadZipFile:
            raise ValueError(f"{path} is not a complete TorchScript archive (truncated or corrupt)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None


def load_bundle(stored: str | bentoml.Model, device: torch.device, dtype: torch.dtype = torch.float32) -> ModelBundle:
    """Load a store entry (a tag like ``nextword:latest`` or a resolved model) onto ``device`` in ``dtype``."""
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
        model, dtype = prepare_for_inference(model, dtype)
    return ModelBundle(
        tag=stored.tag,
        model=model,
        vocab=Vocabulary(read_json(VOCAB_FILE)),
        tokenizer=Tokenizer(TokenizerSettings(**read_json(TOKENIZER_FILE))),
        config=ModelConfig(**read_json(CONFIG_FILE)),
        metadata=dict(stored.info.metadata),
        dtype=dtype,
    )


def prepare_for_inference(
    model: torch.jit.ScriptModule, dtype: torch.dtype
) -> tuple[torch.jit.ScriptModule, torch.dtype]:
    """Cast to ``dtype`` and freeze (inlined weights run faster on CPU); returns the dtype used.

    Entries saved before the store kept the module unfrozen hold a frozen
    float32 module, which has no parameters left to cast: those stay float32.
    """
    model.eval()
    weight = next(model.parameters(), None)
    if weight is None:
        return model, torch.float32
    frozen = torch.jit.freeze(model.to(dtype), preserved_attrs=SERVING_METHODS)
    # A module frozen in this process has a type that another scripted module
    # cannot hold (models.scoring wraps it); saving and loading it back gives it
    # the ordinary type a loaded module has.
    buffer = io.BytesIO()
    torch.jit.save(frozen, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer, map_location=weight.device).eval()
    if len(loaded.decode.schema.arguments) == 2:  # self, hidden: saved before decode took the state
        loaded = torch.jit.script(StatelessDecode(loaded))
    return loaded, dtype


class StatelessDecode(nn.Module):
    """An entry saved before the recency cache (``models.recency``): its ``decode(hidden)`` needs
    no state, and gets the ``decode(hidden, state)`` that serving calls."""

    def __init__(self, model: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.model(tokens, state)

    @torch.jit.export
    def encode(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.encode(tokens, state)

    @torch.jit.export
    def decode(self, hidden: Tensor, state: Tensor, recency: bool = True) -> Tensor:
        return self.model.decode(hidden)

    @torch.jit.export
    def zero_state(self, batch_size: int) -> Tensor:
        return self.model.zero_state(batch_size)
