"""Learning-rate schedules for a run bounded by a wall-clock budget.

Training here stops when ``--max-minutes`` is spent, not after a fixed number
of epochs, so a schedule that anneals by epochs does not know where the end
is. ``BudgetCosine`` anneals by the clock instead: the rate falls along a
half cosine from its initial value to zero as the budget is spent, so the
last minutes always run at a small rate, whatever the machine's speed.
``plateau`` (the default; it measured better in the budget) cuts the rate 4x whenever validation stalls.

Usage::

    schedule = BudgetCosine(optimizer, started=time.monotonic(), deadline=deadline)
    for batch in ...:
        schedule.step(time.monotonic())   # before each optimizer step
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "plateau")


class BudgetCosine:
    """lr(t) = lr0 * (1 + cos(pi * spent)) / 2, where ``spent`` runs from 0 to 1 over the budget."""

    def __init__(self, optimizer: torch.optim.Optimizer, started: float, deadline: float) -> None:
        self.optimizer = optimizer
        self.started = started
        self.span = max(deadline - started, 1e-9)
        self.initial = [group["lr"] for group in optimizer.param_groups]

    def rate(self, now: float) -> float:
        """The factor on the initial rate at time ``now``: 1 at the start, 0 at the deadline and after."""
        spent = min(max((now - self.started) / self.span, 0.0), 1.0)
        return (1 + math.cos(math.pi * spent)) / 2

    def step(self, now: float) -> None:
        factor = self.rate(now)
        for group, initial in zip(self.optimizer.param_groups, self.initial, strict=True):
            group["lr"] = initial * factor
