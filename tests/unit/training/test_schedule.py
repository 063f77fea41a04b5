"""The cosine learning-rate schedule over a wall-clock budget."""

from __future__ import annotations

import math

import pytest
import torch

from training.schedule import BudgetCosine


def test_budget_cosine_falls_from_the_initial_rate_to_zero_at_the_deadline() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=20.0)
    schedule = BudgetCosine(optimizer, started=100.0, deadline=200.0)
    assert [schedule.rate(t) for t in (100.0, 150.0, 200.0, 260.0)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    schedule.step(175.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(20.0 * (1 + math.cos(math.pi * 0.75)) / 2)
