"""The running mean of the weights (averaged SGD), swapped in and back."""

from __future__ import annotations

import torch

from training.averaging import WeightAverage


def test_weight_average_is_the_mean_of_the_steps_and_swaps_back() -> None:
    model = torch.nn.Linear(3, 2)
    snapshots = [model.weight.detach().clone()]
    average = WeightAverage(model)
    for _ in range(2):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        snapshots.append(model.weight.detach().clone())
        average.update(model)
    last = model.weight.detach().clone()
    with average.swapped_in(model):
        torch.testing.assert_close(model.weight, torch.stack(snapshots).mean(0))
    assert torch.equal(model.weight, last)
