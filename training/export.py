"""Compile a trained model with TorchScript and save it to the BentoML store.

The scripted module is checked against the eager model on real input before
anything is written, and saved unfrozen in float32: loading
(``models.bundle``) casts it to the serving precision and freezes it then.
The store entry commits only if every file was written.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import bentoml
import torch
from torch import Tensor

from models.bundle import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, VOCAB_FILE
from models.rnn import ModelConfig, RecurrentLM, count_parameters
from models.tokenizer import Tokenizer, TokenizerSettings
from models.vocab import Vocabulary
from training.corpus import Corpus
from training.data import batchify, encode_stream

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.train import TrainOutcome

EXPORT_TOLERANCE = 1e-4


class ExportError(Exception):
    """The scripted model does not reproduce the eager one."""


def script_model(model: RecurrentLM) -> torch.jit.ScriptModule:
    """Script ``model`` in eval mode."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        return torch.jit.script(model.eval())


@torch.inference_mode()
def check_scripted(eager: RecurrentLM, scripted: torch.jit.ScriptModule, sample: Tensor) -> float:
    """Largest log-probability difference on ``sample`` (B, T); raises past the tolerance."""
    eager.eval()
    batch = sample.size(0)
    eager_logits, eager_state = eager(sample, eager.zero_state(batch))
    script_logits, script_state = scripted(sample, scripted.zero_state(batch))
    difference = (eager_logits.log_softmax(-1) - script_logits.log_softmax(-1)).abs().max().item()
    state_difference = (eager_state - script_state).abs().max().item()
    if difference > EXPORT_TOLERANCE or state_difference > EXPORT_TOLERANCE:
        raise ExportError(f"scripted model differs from eager: log-prob {difference:.2e}, state {state_difference:.2e}")
    return difference


def save_to_store(
    name: str,
    scripted: torch.jit.ScriptModule,
    vocab: Vocabulary,
    tokenizer: TokenizerSettings,
    config: ModelConfig,
    labels: dict[str, str],
    metadata: dict[str, Any],
) -> bentoml.Tag:
    """Write one versioned store entry; returns its tag."""
    with bentoml.models.create(name, labels=labels, metadata=metadata) as stored:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
            torch.jit.save(scripted, stored.path_of(MODEL_FILE))
        for file_name, content in (
            (VOCAB_FILE, vocab.words),
            (TOKENIZER_FILE, tokenizer.to_dict()),
            (CONFIG_FILE, config.to_dict()),
        ):
            with open(stored.path_of(file_name), "w", encoding="utf-8") as file:
                json.dump(content, file, ensure_ascii=False)
    return stored.tag


def export(config: TrainConfig, corpus: Corpus, outcome: TrainOutcome) -> str:
    """Script, verify against eager, and save to the store; returns the tag."""
    device = next(outcome.model.parameters()).device
    scripted = script_model(outcome.model)
    sample_ids = encode_stream(corpus.valid[:50], Tokenizer(outcome.tokenizer), outcome.vocab)
    check_scripted(outcome.model, scripted, batchify(sample_ids, 2)[:, :40].to(device))
    labels = {
        "level": outcome.tokenizer.level,
        "architecture": outcome.model_config.architecture,
        "layers": str(outcome.model_config.num_layers),
        "hidden_size": str(outcome.model_config.hidden_size),
        "vocab_size": str(len(outcome.vocab)),
    }
    metadata = {
        "model_config": outcome.model_config.to_dict(),
        "parameters": count_parameters(outcome.model),
        "vocab_size": len(outcome.vocab),
        "tokenizer": outcome.tokenizer.to_dict(),
        "corpus": corpus.source,
        "corpus_sha256": corpus.sha256,
        "train_tokens": outcome.train_tokens,
        "valid_tokens": outcome.valid.tokens,
        "test_tokens": outcome.test.tokens,
        "valid_perplexity": outcome.valid.perplexity,
        "test_perplexity": outcome.test.perplexity,
        "test_top1_accuracy": outcome.test.top1_accuracy,
        "test_top5_accuracy": outcome.test.top5_accuracy,
        "level": outcome.tokenizer.level,
        "epochs": outcome.epochs_run,
        "train_seconds": round(outcome.train_seconds, 1),
        "torch_version": str(torch.__version__),
        # The store rejects None in metadata; an unset option is left out.
        "train_config": {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(config).items()
            if value is not None
        },
    }
    if outcome.typing is not None:
        metadata["test_typing"] = outcome.typing.to_dict()
    if outcome.fresh is not None:
        metadata["test_fresh_texts"] = outcome.fresh.to_dict()
    if outcome.recency is not None and outcome.test_without_recency is not None:
        metadata["recency"] = outcome.recency.to_dict() | {
            "test_perplexity_without": outcome.test_without_recency.perplexity
        }
    if outcome.tokenizer.level == "char":
        metadata["test_bits_per_character"] = outcome.test.bits_per_token
    tag = save_to_store(
        config.model_name, scripted, outcome.vocab, outcome.tokenizer, outcome.model_config, labels, metadata
    )
    return str(tag)
