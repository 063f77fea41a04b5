"""Averaged SGD: validate and keep the running mean of the weights, not the last ones.

AWD-LSTM (Merity et al. 2017) switches plain SGD to averaging once
validation stalls: from then on every step's weights join a running mean,
and the mean is what gets evaluated and kept. Averaging the iterates of a
noisy, small-rate phase lands nearer the middle of the valley than any one
of them (Polyak & Juditsky 1992). ``training.train`` starts it when the
learning rate is first cut (``--average-weights``).

Usage::

    average = WeightAverage(model)     # from the current weights
    ...; optimizer.step(); average.update(model)    # after every step
    with average.swapped_in(model):    # evaluate or copy the averaged weights
        evaluate(model, ...)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """The running mean of every trainable parameter since it was made."""

    def __init__(self, model: nn.Module) -> None:
        self.mean = [p.detach().clone() for p in model.parameters()]
        self.count = 1

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.count += 1
        for mean, p in zip(self.mean, model.parameters(), strict=True):
            mean.add_(p.detach() - mean, alpha=1 / self.count)

    @contextmanager
    @torch.no_grad()
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """The model holds the mean inside the block and its own weights again after it."""
        own = [p.detach().clone() for p in model.parameters()]
        for mean, p in zip(self.mean, model.parameters(), strict=True):
            p.copy_(mean)
        try:
            yield
        finally:
            for saved, p in zip(own, model.parameters(), strict=True):
                p.copy_(saved)
