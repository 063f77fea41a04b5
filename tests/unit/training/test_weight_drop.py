"""DropConnect on the recurrent weights: masks only while training, a plain model after."""

from __future__ import annotations

import pytest
import torch

from models.rnn import ModelConfig, RecurrentLM
from training.config import parse_args
from training.weight_drop import add_weight_drop, remove_weight_drop


def test_weight_drop_masks_the_recurrent_weights_only_while_training() -> None:
    model = RecurrentLM(ModelConfig(vocab_size=50, embedding_dim=8, hidden_size=8, num_layers=2))
    add_weight_drop(model, 0.5)
    rnn = model.core.rnn
    original = rnn.parametrizations.weight_hh_l1.original.detach().clone()
    model.train()
    masked = rnn.weight_hh_l1
    assert 0.3 < (masked == 0).float().mean().item() < 0.7  # about half dropped ...
    kept = masked != 0
    assert torch.allclose(masked[kept], original[kept] * 2)  # ... the rest scaled by 1 / (1 - p)
    assert "weight_ih_l0" not in rnn.parametrizations  # inputs are left to ordinary dropout
    model.eval()
    assert torch.equal(rnn.weight_hh_l1, original)
    remove_weight_drop(model)
    assert isinstance(rnn.weight_hh_l1, torch.nn.Parameter) and torch.equal(rnn.weight_hh_l1, original)


def test_weight_drop_option() -> None:
    assert parse_args(["--weight-drop", "0.5"]).weight_drop == 0.5
    with pytest.raises(SystemExit):
        parse_args(["--weight-drop", "1"])
