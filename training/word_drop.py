"""Embedding dropout: drop whole words from the input for a window, for training only.

Ordinary dropout on the embedded inputs zeroes single coordinates; AWD-LSTM
(Merity et al. 2017, after Gal & Ghahramani 2016) also drops entire words of
the vocabulary: for one BPTT window, every occurrence of a dropped word
enters the model as a zero vector, and the kept words are scaled by
1 / (1 - p). The model must then predict from the context alone, a
regularizer for a small corpus where train perplexity runs far below
validation's.

It is a forward hook on the model's embedding (any embedding module:
``nn.Embedding`` or the tied ``AdaptiveInput``), so the model's code and its
exported TorchScript form are untouched. Usage::

    hook = add_word_drop(model, 0.1, len(vocab))   # before training
    ...                                # each forward in train mode draws a mask over the vocabulary
    hook.remove()                      # before export
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


class WordDrop:
    """The hook: (B, T) ids -> (B, T, E) vectors, with the dropped words' vectors zeroed."""

    def __init__(self, p: float, vocab_size: int) -> None:
        self.p = p
        self.vocab_size = vocab_size

    def __call__(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if not module.training:
            return output
        ids = inputs[0]  # (B, T)
        keep = torch.rand(self.vocab_size, device=ids.device) >= self.p  # (V,): one draw a word type
        scale = keep.to(output.dtype) / (1 - self.p)
        return output * scale[ids].unsqueeze(-1)


def add_word_drop(model: nn.Module, p: float, vocab_size: int) -> RemovableHandle | None:
    """Drop a share ``p`` of the vocabulary at each training forward of ``model.embedding``; None when p is 0."""
    if p <= 0:
        return None
    return model.embedding.register_forward_hook(WordDrop(p, vocab_size))
