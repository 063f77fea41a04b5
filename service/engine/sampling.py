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

# Below this, a temperature divides logits into infinities (float32 denormals reach
# 1e-45) and the softmax into NaN; this close to 0 every word but the top one is
# already below any uniform draw.
MIN_TEMPERATURE = 1e-5


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
    from the temperature-scaled distribution cut to its top_k words and then
    to the smallest prefix whose probability reaches top_p. Sorting all V
    words costs as much as the decoder, so each row takes the cheapest exact
    method its own settings allow, never one chosen by its batch companions
    (which would make a seeded row depend on them): plain sampling reads the
    CDF in vocabulary order, top_k sorts only k words, and only a top_p
    without a top_k sorts the vocabulary. Each (B, V) pass counts (a decode
    step of 128 rows spends a third of its time here), so a group that is the
    whole batch reads ``logits`` itself rather than a copy, and a top_k
    group picks its k words before scaling by temperature (which keeps their
    order), so only k values a row are scaled.
    """
    batch, vocab_size = logits.shape
    chosen = torch.zeros(batch, dtype=torch.long, device=logits.device)
    sampled = params.temperature > 0
    if not bool(sampled.all()):
        greedy = (~sampled).nonzero().squeeze(1)
        chosen[greedy] = _rows(logits, greedy).argmax(dim=-1)
    top_k = torch.where(params.top_k > 0, params.top_k.clamp_max(vocab_size), vocab_size)
    plain = sampled & (top_k == vocab_size) & (params.top_p >= 1)
    if bool(plain.any()):
        rows = plain.nonzero().squeeze(1)
        probs = (_rows(logits, rows) / params.temperature[rows].clamp_min(MIN_TEMPERATURE).unsqueeze(1)).softmax(
            dim=-1
        )  # (R, V)
        chosen[rows] = _inverse_cdf(probs, uniforms[rows])
    for k in top_k[sampled & ~plain].unique().tolist():
        rows = (sampled & ~plain & (top_k == k)).nonzero().squeeze(1)
        if k < vocab_size:
            top_logits, top_ids = _rows(logits, rows).topk(k, dim=-1)  # (R, k), likeliest first
        else:
            top_logits, top_ids = _rows(logits, rows).sort(dim=-1, descending=True, stable=True)
        top_logits = top_logits / params.temperature[rows].clamp_min(MIN_TEMPERATURE).unsqueeze(1)
        probs = top_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        cut = mass_before >= params.top_p[rows].unsqueeze(1)
        cut[:, 0] = False  # the top word always stays, even for a top_p that rounds to 0
        probs = probs.masked_fill(cut, 0.0)
        chosen[rows] = top_ids.gather(1, _inverse_cdf(probs, uniforms[rows]).unsqueeze(1)).squeeze(1)
    return chosen


def _rows(logits: Tensor, rows: Tensor) -> Tensor:
    """``logits[rows]`` for (R,) row indices, without the (R, V) copy when they are every row in order."""
    return logits if rows.numel() == logits.size(0) else logits[rows]


def _inverse_cdf(probs: Tensor, uniforms: Tensor) -> Tensor:
    """(R, N) probabilities (not necessarily summing to 1), (R,) uniforms -> (R,) positions."""
    cumulative = probs.cumsum(dim=-1)
    # A uniform that rounds to 1.0 would land past the last word with any probability.
    uniforms = uniforms.clamp_max(1.0 - torch.finfo(cumulative.dtype).eps)
    targets = (uniforms * cumulative[:, -1]).unsqueeze(1)
    return torch.searchsorted(cumulative, targets, right=True).squeeze(1).clamp_max(probs.size(-1) - 1)


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
