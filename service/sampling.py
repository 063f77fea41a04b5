"""Next-token choice for a batch of rows, each with its own settings.

All work is on the logits' device and vectorised over the batch and the
vocabulary; the only per-row Python is drawing one uniform number per row per
step from that row's own generator, which is what makes a seeded request give
the same text whether it is served alone or in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SamplingBatch:
    """Per-row settings as (B,) tensors on the logits' device."""

    temperature: Tensor  # float; 0 = greedy
    top_k: Tensor  # long; 0 = off
    top_p: Tensor  # float in (0, 1]

    def select(self, rows: Tensor) -> SamplingBatch:
        return SamplingBatch(self.temperature[rows], self.top_k[rows], self.top_p[rows])

    def concat(self, other: SamplingBatch) -> SamplingBatch:
        return SamplingBatch(
            torch.cat([self.temperature, other.temperature]),
            torch.cat([self.top_k, other.top_k]),
            torch.cat([self.top_p, other.top_p]),
        )


def choose_next(logits: Tensor, params: SamplingBatch, uniforms: Tensor) -> Tensor:
    """(B, V) logits, (B,) uniforms in [0, 1) -> (B,) chosen ids.

    Rows with temperature 0 take the argmax; the others sample by inverse CDF
    from the temperature-scaled distribution cut to its top_k words and then to
    the smallest prefix whose probability reaches top_p.
    """
    greedy = logits.argmax(dim=-1)
    vocab_size = logits.size(-1)
    temperature = params.temperature.clamp_min(1e-5).unsqueeze(1)
    sorted_logits, sorted_ids = (logits / temperature).sort(dim=-1, descending=True)  # (B, V)

    ranks = torch.arange(vocab_size, device=logits.device)
    top_k = torch.where(params.top_k > 0, params.top_k, vocab_size).unsqueeze(1)
    sorted_logits = sorted_logits.masked_fill(ranks >= top_k, float("-inf"))
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    probs = probs.masked_fill(mass_before >= params.top_p.unsqueeze(1), 0.0)  # the top word always stays

    cumulative = probs.cumsum(dim=-1)
    targets = (uniforms * cumulative[:, -1]).unsqueeze(1)
    picks = torch.searchsorted(cumulative, targets, right=True).clamp_max(vocab_size - 1)
    sampled = sorted_ids.gather(1, picks).squeeze(1)
    return torch.where(params.temperature == 0, greedy, sampled)


def row_generator(seed: int | None) -> torch.Generator:
    """A CPU generator for one row: seeded as asked, else from fresh entropy."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def draw_uniforms(generators: list[torch.Generator], device: torch.device) -> Tensor:
    """One uniform number per row, each from that row's generator, as a (B,) tensor on ``device``."""
    values = torch.cat([torch.rand(1, generator=generator) for generator in generators])
    return values.to(device)
