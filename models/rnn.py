"""Word-level recurrent language model: vanilla tanh RNN, LSTM or GRU.

One contract for training, export and serving::

    logits, state = model(tokens, state)
    # tokens: (B, T) int64   state: (S, L, B, H)   logits: (B, T, V)

where S is 2 for an LSTM (``h`` and ``c`` stacked) and 1 otherwise, plus the
slots of the recency cache's window when it has one (``models.recency``), L
the number of layers and H the hidden size. ``model.zero_state(batch_size)``
gives the initial state, so callers never special-case the architecture.
Serving calls the two halves of ``forward`` itself, ``encode`` then
``decode(hidden, state)`` with the state ``encode`` returned, to run the
(B*T, H) x (H, V) decoder only at the positions it needs. The module
is written for ``torch.jit.script``: each architecture is wrapped in a small
core with the same ``(x, state) -> (y, state)`` signature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from models.adaptive_softmax import AdaptiveInput, AdaptiveSoftmax
from models.recency import RecencyCache, cache_slots

ARCHITECTURES = ("rnn", "lstm", "gru")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the model; saved with its weights."""

    architecture: str = "lstm"
    vocab_size: int = 10_000
    embedding_dim: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    dropout: float = 0.2
    # One dropout mask per sequence, shared by its time steps (variational dropout, Gal &
    # Ghahramani 2016), on the embedded inputs and the top layer's outputs; else a mask per step.
    locked_dropout: bool = False
    tie_weights: bool = True
    # Empty: a full (H, V) decoder. Else models.adaptive_softmax with these cluster edges
    # (tied: with the adaptive input embedding of the same module).
    softmax_cutoffs: tuple[int, ...] = ()
    # The recency cache (models.recency): the last recency_window words kept in the state, mixed in
    # with recency_weight, each weighted exp(-recency_decay * age). Window 0: none. Entries saved
    # before recency_skip, recency_fill and recency_repeat existed load with 0, 0 and 1: the cache they were tuned with.
    recency_window: int = 0
    recency_decay: float = 0.0
    recency_weight: float = 0.0
    recency_skip: int = 0  # the newest words the cache leaves out
    recency_fill: float = 0.0  # window words at which the cache has half its weight; 0: all at once
    recency_repeat: float = 1.0  # the factor on the probability of the word just typed; 1: as mixed

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            # Tying shares the (V, E) embedding with the (V, H) decoder.
            raise ValueError("tie_weights needs embedding_dim == hidden_size")
        object.__setattr__(self, "softmax_cutoffs", tuple(self.softmax_cutoffs))  # a list when read from JSON

    @property
    def recurrent_slots(self) -> int:
        return 2 if self.architecture == "lstm" else 1

    @property
    def state_slots(self) -> int:
        return self.recurrent_slots + cache_slots(self.recency_window, self.num_layers, self.hidden_size)

    @property
    def log_probabilities(self) -> bool:
        """Whether ``decode`` returns normalized log-probabilities (the adaptive softmax, or any
        model with a recency cache) or raw logits."""
        return bool(self.softmax_cutoffs) or self.recency_window > 0

    def to_dict(self) -> dict:
        return asdict(self)


class _LSTMCore(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        y, (h, c) = self.rnn(x, (state[0], state[1]))
        return y, torch.stack([h, c])


class _GRUCore(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.GRU(input_size, hidden_size, num_layers, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        y, h = self.rnn(x, state[0])
        return y, h.unsqueeze(0)


class _TanhCore(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, nonlinearity="tanh", dropout=dropout, batch_first=True)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        y, h = self.rnn(x, state[0])
        return y, h.unsqueeze(0)


_CORES = {"lstm": _LSTMCore, "gru": _GRUCore, "rnn": _TanhCore}


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence: (B, T, H) inputs share a (B, 1, H) mask over time.

    A mask per step perturbs an RNN's inputs differently at every step;
    keeping it for the whole sequence regularizes better (Gal & Ghahramani
    2016; AWD-LSTM) and draws T times fewer random numbers. The identity in
    eval mode and for inputs that are not (B, T, H).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0 or x.dim() != 3:
            return x
        keep = torch.empty_like(x[:, :1]).bernoulli_(1.0 - self.p)  # (B, 1, H)
        return x * keep / (1.0 - self.p)


class RecurrentLM(nn.Module):
    """Embedding -> N recurrent layers -> linear decoder, with dropout, optional tying and recency cache."""

    __constants__ = ["recurrent_slots", "normalized"]

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.recurrent_slots = config.recurrent_slots
        self.state_slots = config.state_slots
        self.normalized = bool(config.softmax_cutoffs)  # the decoder returns log-probabilities
        self.num_layers = config.num_layers
        self.hidden_size = config.hidden_size
        # Empty; it follows the model's .to(dtype / device), so zero_state need not know which weights exist.
        self.register_buffer("dtype_and_device", torch.zeros(0), persistent=False)
        self.embedding: nn.Module = nn.Embedding(config.vocab_size, config.embedding_dim)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.dropout: nn.Module = LockedDropout(config.dropout) if config.locked_dropout else nn.Dropout(config.dropout)
        inner_dropout = config.dropout if config.num_layers > 1 else 0.0
        self.core = _CORES[config.architecture](
            config.embedding_dim, config.hidden_size, config.num_layers, inner_dropout
        )
        self.decoder: nn.Module
        if config.softmax_cutoffs:
            self.decoder = AdaptiveSoftmax(config.hidden_size, config.vocab_size, list(config.softmax_cutoffs))
            if config.tie_weights:
                self.embedding = AdaptiveInput(self.decoder)
        else:
            self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
            nn.init.zeros_(self.decoder.bias)
        if config.tie_weights and not config.softmax_cutoffs:
            # Press & Wolf 2016, Inan et al. 2016: sharing input and output embeddings
            # lowers perplexity and saves V*H parameters.
            self.decoder.weight = self.embedding.weight
        self.recency = RecencyCache(
            config.recency_window,
            config.num_layers,
            config.hidden_size,
            config.recency_decay,
            config.recency_weight,
            config.recency_skip,
            config.recency_fill,
            config.recency_repeat,
        )

    def forward(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        hidden, new_state = self.encode(tokens, state)
        logits = self.decoder(self.dropout(hidden))  # (B, T, V)
        if self.recency.window == 0 or (self.recency.weight == 0.0 and self.recency.repeat == 1.0):
            return logits, new_state
        rows, steps, vocab_size = logits.shape
        windows = self.recency.windows(state[self.recurrent_slots :], tokens)  # (B, T, W, DIGITS)
        flat = self.recency.mix(self._log_probs(logits).reshape(-1, vocab_size), windows.flatten(0, 1))
        return flat.view(rows, steps, vocab_size), new_state

    @torch.jit.export
    def encode(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T) ids, (S, L, B, H) state -> (B, T, H) top-layer outputs, new state."""
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        if self.recency.window == 0:
            return self.core(x, state)
        out, recurrent = self.core(x, state[: self.recurrent_slots])
        return out, torch.cat([recurrent, self.recency.push(state[self.recurrent_slots :], tokens)])

    @torch.jit.export
    def decode(self, hidden: Tensor, state: Tensor, recency: bool = True) -> Tensor:
        """(B, H) top-layer outputs and the (S, L, B, H) state ``encode`` returned with them ->
        (B, V) next-word logits (log-probabilities when adaptive or with a recency cache).

        ``recency=False`` leaves the recency cache out: sampling does, since a cache
        fed the model's own samples favours them ever more and the text loops.
        """
        logits = self.decoder(self.dropout(hidden))
        if self.recency.window == 0:
            return logits
        if (self.recency.weight == 0.0 and self.recency.repeat == 1.0) or not recency:
            return self._log_probs(logits)
        return self.recency.mix(self._log_probs(logits), self.recency.read(state[self.recurrent_slots :]))

    def _log_probs(self, logits: Tensor) -> Tensor:
        return logits if self.normalized else logits.log_softmax(-1)

    def loss(self, tokens: Tensor, targets: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy of (B, T) next-token targets, for training, and the new state.

        The same as cross-entropy over ``forward``'s logits without the recency
        cache (which is not trained), but an adaptive softmax scores each
        position only in its target's cluster.
        """
        hidden, state = self.encode(tokens, state)
        hidden = self.dropout(hidden).reshape(-1, self.hidden_size)  # (B, T, H) -> (B*T, H)
        if isinstance(self.decoder, AdaptiveSoftmax):
            return self.decoder.loss(hidden, targets.reshape(-1)), state
        return nn.functional.cross_entropy(self.decoder(hidden), targets.reshape(-1)), state

    @torch.jit.export
    def zero_state(self, batch_size: int) -> Tensor:
        """The initial state (S, L, B, H) on the model's device: an empty recency window too."""
        weight = self.dtype_and_device
        return torch.zeros(
            self.state_slots,
            self.num_layers,
            batch_size,
            self.hidden_size,
            dtype=weight.dtype,
            device=weight.device,
        )


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, counting tied weights once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
