"""DropConnect on the recurrent core's hidden-to-hidden weights, for training only.

Dropout on activations cannot touch the recurrence itself without breaking
the fast fused kernels; AWD-LSTM (Merity et al. 2017) instead drops entries of
each ``weight_hh`` matrix, one mask per forward call (per BPTT window), shared
by every time step of it. On our small corpus the models overfit (train
perplexity far below validation, docs/training.md), which is what
this regularizer is for.

Usage::

    add_weight_drop(model, 0.5)       # before the optimizer is built
    with one_mask_per_window():       # around each window's forward and backward
        ...
    model.eval(); remove_weight_drop(model)   # before export: a plain RecurrentLM again

It is a ``torch.nn.utils.parametrize`` parametrization, which ``nn.LSTM`` reads
afresh at every forward; removed, it leaves the learned weights as they are
(a dropout in eval mode is the identity), so the exported TorchScript model,
its state-dict keys and serving are unchanged.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from torch import Tensor, nn
from torch.nn.utils import parametrize


class DropConnect(nn.Module):
    """weight -> dropout(weight): a fresh mask at each access while training, the weight itself in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, weight: Tensor) -> Tensor:
        return nn.functional.dropout(weight, self.p, self.training)


def one_mask_per_window() -> AbstractContextManager[None]:
    """Each weight's parametrization computed once inside: one mask for the window.

    Without it ``nn.LSTM`` reads its weights three times a forward (to see
    whether they changed, then to refresh its flat list), sampling a mask each
    time, which slows each batch (docs/benchmarks.md). Harmless
    for a model without parametrizations.
    """
    return parametrize.cached()


def recurrent_weight_names(rnn: nn.RNNBase) -> list[str]:
    """The hidden-to-hidden matrices of every layer: weight_hh_l0, weight_hh_l1, ..."""
    return [name for name, _ in rnn.named_parameters(recurse=False) if name.startswith("weight_hh")]


def add_weight_drop(model: nn.Module, p: float) -> None:
    """Drop a share ``p`` of the recurrent weights of every ``nn.RNNBase`` in ``model`` while it trains."""
    if p <= 0:
        return
    for rnn in (m for m in model.modules() if isinstance(m, nn.RNNBase)):
        for name in recurrent_weight_names(rnn):
            parametrize.register_parametrization(rnn, name, DropConnect(p))


def remove_weight_drop(model: nn.Module) -> None:
    """Make the weights plain parameters again (call in eval mode): the model exports as if never wrapped."""
    for rnn in (m for m in model.modules() if isinstance(m, nn.RNNBase)):
        if parametrize.is_parametrized(rnn):
            for name in list(rnn.parametrizations.keys()):
                parametrize.remove_parametrizations(rnn, name, leave_parametrized=True)
