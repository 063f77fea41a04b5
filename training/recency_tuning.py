"""Choosing the recency cache's decay and weight on the validation split, after training.

The cache (``models.recency``) has no trained weights: only how fast a word's
weight fades with age and the cache's share of the mixture. One pass of the
model over the split, cache off, gives the model's probability of every
target; the window before every target is read off the stream itself; then
each (decay, weight) pair of a small grid costs a few tensor operations, not
a pass of the model. The split is read as ``training.evaluate`` reads it
(``EVAL_BATCH_SIZE`` rows, the state carried across windows), so the
perplexity chosen here is the one ``evaluate`` then measures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from models.rnn import RecurrentLM
from training.data import EVAL_BATCH_SIZE, EVAL_BPTT, batchify, bptt_windows

DECAYS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)  # per word of age
WEIGHTS = (0.0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)  # 0: no cache
POSITIONS_PER_CHUNK = 256  # bounds the (B, chunk, W) window tensors


@dataclass(frozen=True)
class RecencyChoice:
    decay: float
    weight: float
    perplexity: float  # on the split, with the cache
    perplexity_without: float  # the model alone

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def tune_recency(model: RecurrentLM, stream: Tensor, device: torch.device) -> RecencyChoice:
    """Set ``model.recency``'s decay and weight to the grid's best on ``stream`` (1-D ids); return them."""
    was_training = model.training
    model.eval()
    model.recency.weight = 0.0
    rows = batchify(stream, EVAL_BATCH_SIZE).to(device)  # (B, N + 1)
    state = model.zero_state(EVAL_BATCH_SIZE)
    probabilities = []
    for inputs, targets in bptt_windows(rows, EVAL_BPTT):
        logits, state = model(inputs, state)  # (B, T, V)
        chosen = logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1))  # (B, T, 1)
        probabilities.append(chosen.squeeze(-1).exp())
    model.train(was_training)
    model_p = torch.cat(probabilities, dim=1)  # (B, N): the model's probability of each target
    by_decay = {decay: cache_probabilities(rows, model.recency.window, decay) for decay in DECAYS}
    scores = {
        (decay, weight): -((1 - weight) * model_p + weight * cache_p).log().mean().item()
        for decay, cache_p in by_decay.items()
        for weight in WEIGHTS
    }
    decay, weight = min(scores, key=lambda pair: scores[pair])
    model.recency.decay, model.recency.weight = decay, weight
    return RecencyChoice(decay, weight, math.exp(scores[(decay, weight)]), math.exp(scores[(0.0, 0.0)]))


def cache_probabilities(rows: Tensor, window: int, decay: float) -> Tensor:
    """(B, N) cache probability of each target ``rows[:, t + 1]`` from the window of inputs up to ``rows[:, t]``."""
    batch, count = rows.size(0), rows.size(1) - 1
    empty = torch.full((batch, window), -1, dtype=rows.dtype, device=rows.device)
    padded = torch.cat([empty, rows[:, :count]], dim=1)  # (B, W + N)
    weights = torch.exp(-decay * torch.arange(window - 1, -1, -1, dtype=torch.float32, device=rows.device))  # (W,)
    out = []
    for start in range(0, count, POSITIONS_PER_CHUNK):
        end = min(count, start + POSITIONS_PER_CHUNK)
        windows = padded[:, start + 1 : end + window].unfold(1, window, 1)  # (B, chunk, W), oldest first
        hits = (windows == rows[:, start + 1 : end + 1].unsqueeze(-1)).float()
        present = (windows >= 0).float()
        out.append((hits @ weights) / (present @ weights))
    return torch.cat(out, dim=1)
