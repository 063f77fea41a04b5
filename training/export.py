"""Compile a trained model with TorchScript and save it to the BentoML store.

The scripted module is checked against the eager model on real input before
anything is written, and saved unfrozen in float32: loading
(``models.bundle``) casts it to the serving precision and freezes it then.
The store entry commits only if every file was written.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import bentoml
import torch
from torch import Tensor

from models.bundle import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, VOCAB_FILE
from models.rnn import ModelConfig, RecurrentLM
from models.tokenizer import TokenizerSettings
from models.vocab import Vocabulary

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
