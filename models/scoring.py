"""Next-word scoring in one TorchScript call: token ids in, the top words out.

The service runs the model on a thread beside the event loop. Every eager
torch op called from Python drops the GIL and takes it back, and taking it
back can wait for the event loop's switch interval (5 ms by default), so a
dozen small ops per batch cost more than the math. Scripted, the whole
scoring path runs with the GIL released once.

Usage::

    top_words = compile_top_words(bundle.model)  # a model loaded with torch.jit.load
    probs, ids = top_words(tokens, lengths, k)  # (B, T), (B,) -> (B, k), (B, k)
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


class TopWords(nn.Module):
    """The k likeliest next words after each right-padded row, with their probabilities."""

    def __init__(self, model: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(B, T) ids and (B,) real lengths -> (B, k) probabilities and (B, k) ids, likeliest first.

        A recurrent model's output at step t depends only on steps <= t, so
        each row is read at its own last real step and padding never counts.
        """
        batch = tokens.size(0)
        out, _ = self.model.encode(tokens, self.model.zero_state(batch))  # (B, T, H)
        last = out[torch.arange(batch, device=tokens.device), lengths - 1]  # (B, H)
        logits = self.model.decode(last).float()  # (B, V)
        # exp(logit - logsumexp) for the top words only, without a (B, V) softmax.
        top_logits, top_ids = logits.topk(k, dim=-1)
        return (top_logits - logits.logsumexp(dim=-1, keepdim=True)).exp(), top_ids


def compile_top_words(model: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Script ``TopWords`` around a model loaded with ``torch.jit.load``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        return torch.jit.script(TopWords(model))
