"""A recency cache: the text's last W words, kept in the recurrent state, raise their own odds.

Words repeat within a text: a name, a place, a topic's terms. A cache
language model (Kuhn & De Mori 1990; Grave et al. 2017 for the neural cache
that AWD-LSTM reports with) mixes the model's next-word distribution with one
drawn from the recent words::

    p(w) = (1 - share) * p_model(w) + share * p_cache(w)
    p_cache(w) = sum of exp(-decay * age_i) over the window's positions i holding w
                 with age_i >= skip, normalized
    share = weight * n / (n + fill), n the number of those positions

Two terms serve texts that have just begun, as people's texts have. A
fresh text's window holds a few words, so each would take a large part of
the cache's mass and the suggestions would echo the words just typed:
``fill`` makes the cache's share grow with how much the window holds (0:
the whole ``weight`` from the first word), and ``skip`` leaves the newest
words out of the boost (a text repeats a word back to back almost never,
so the word just typed is the one the cache must not suggest). ``repeat``
then scales the probability of the word just typed (the rest renormalized):
the model itself learned to loop on some words (``C. C. C.``), and a person
accepting suggestions one after another would see the loop.

The window lives in the state tensor, in extra slots after the recurrent
ones, so everything that carries a state (the state cache, the decode
batches, evaluation across windows) carries the window with it and a row
resumed from a cached prefix gets exactly what a run from the start gets.
It costs nothing to train: ``decay``, ``weight``, ``skip``, ``fill`` and ``repeat`` are
chosen on the validation split after training, read both as one stream and
as fresh texts (``training.recency_tuning``). It serves
prediction, where the window holds the user's own words; sampling leaves it
out (``RecurrentLM.decode(..., recency=False)``): fed the model's own
samples it favours them ever more, and generated text loops
(docs/benchmarks.md has the repetition measured).

A state holds numbers in the model's dtype, and bfloat16 is exact for
integers only up to 256, so each id is kept as three base-256 digits (ids
below 2**24), of ``id + 1``: 0 marks an empty place.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.vocab import SPECIALS

DIGITS = 3
FIRST_WORD_ID = len(SPECIALS)  # the specials come first (models.vocab); repeat leaves a line break alone
BASE = 256


def cache_slots(window: int, num_layers: int, hidden_size: int) -> int:
    """State slots of (L, H) numbers that a window of ``window`` ids takes."""
    return math.ceil(window * DIGITS / (num_layers * hidden_size)) if window else 0


class RecencyCache(nn.Module):
    """Reads, extends and mixes in the window kept in slots (C, L, B, H) of a state."""

    __constants__ = ["window", "slots", "width", "first_word_id"]

    def __init__(
        self,
        window: int,
        num_layers: int,
        hidden_size: int,
        decay: float,
        weight: float,
        skip: int = 0,
        fill: float = 0.0,
        repeat: float = 1.0,
    ) -> None:
        super().__init__()
        self.window = window
        self.slots = cache_slots(window, num_layers, hidden_size)
        self.width = window * DIGITS  # numbers per row
        self.decay = decay  # per word of age
        self.weight = weight  # the cache's share of the mixture; 0 leaves the model's distribution as it is
        self.skip = skip  # the newest words left out of the boost
        self.fill = fill  # words read at which the cache has half its weight; 0: all of it at once
        self.repeat = repeat  # the factor on the word just typed; 1 leaves it as the mixture has it
        self.first_word_id = FIRST_WORD_ID
        # The newest word is last, age 0; digit k of a stored value counts BASE**k.
        self.register_buffer("ages", torch.arange(window - 1, -1, -1, dtype=torch.float32), persistent=False)
        self.register_buffer("places", BASE ** torch.arange(DIGITS, dtype=torch.float32), persistent=False)

    def digits(self, tokens: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, DIGITS) base-256 digits of id + 1."""
        value = tokens + 1
        return torch.stack([value % 256, (value // 256) % 256, value // 65536], dim=-1)  # DIGITS of BASE

    def read(self, slots: Tensor) -> Tensor:
        """(C, L, B, H) state slots -> (B, W, DIGITS) digits of the window, oldest first."""
        rows = slots.size(2)
        flat = slots.permute(2, 0, 1, 3).reshape(rows, -1)  # (B, C*L*H)
        return flat[:, : self.width].reshape(rows, self.window, -1)

    def write(self, digits: Tensor, like: Tensor) -> Tensor:
        """(B, W, DIGITS) digits -> state slots shaped and typed as ``like`` (C, L, B, H)."""
        count, layers, rows, hidden = like.shape
        flat = like.new_zeros(rows, count * layers * hidden)
        flat[:, : self.width] = digits.reshape(rows, -1).to(like.dtype)
        return flat.view(rows, count, layers, hidden).permute(1, 2, 0, 3).contiguous()

    def push(self, slots: Tensor, tokens: Tensor) -> Tensor:
        """The slots after the (B, T) ``tokens`` join the window (the oldest leave)."""
        return self.write(self._extended(slots, tokens)[:, -self.window :], slots)

    def windows(self, slots: Tensor, tokens: Tensor) -> Tensor:
        """(B, T, W, DIGITS): the window as each of the (B, T) ``tokens`` leaves it."""
        return self._extended(slots, tokens).unfold(1, self.window, 1)[:, 1:].transpose(2, 3)

    def _extended(self, slots: Tensor, tokens: Tensor) -> Tensor:
        """(B, W+T, DIGITS): the window, then the (B, T) ``tokens``."""
        return torch.cat([self.read(slots), self.digits(tokens).to(slots.dtype)], dim=1)

    def mix(self, log_probs: Tensor, digits: Tensor) -> Tensor:
        """(N, V) next-word log-probabilities and (N, W, DIGITS) windows -> the mixture's (N, V), in float32.

        Only the window's W words change, so besides one (N, V) pass the work is (N, W).
        """
        log_probs = log_probs.float()
        values = (digits.float() * self.places.float()).sum(-1).long()  # (N, W) id + 1; 0: empty
        present = values > 0
        ids = (values - 1).clamp(min=0)  # (N, W); an empty place points at id 0 with weight 0
        ages = self.ages.float()
        present = present & (ages >= self.skip)
        weights = torch.exp(-self.decay * ages) * present  # (N, W)
        total = weights.sum(-1, keepdim=True)  # (N, 1)
        read = present.sum(-1, keepdim=True).float()  # (N, 1) words the cache reads
        share = torch.where(total > 0, self.weight * read / (read + self.fill), torch.zeros_like(total))  # (N, 1)
        # Each place's word's whole cache probability, summed over the places that hold it.
        cache = torch.zeros_like(log_probs).scatter_add_(1, ids, weights / total.clamp(min=1e-30))
        cached = cache.gather(1, ids)  # (N, W)
        mixed = log_probs + torch.log1p(-share)  # (N, V): the model's part
        at_window = torch.logaddexp(mixed.gather(1, ids), torch.log(share * cached))  # (N, W)
        mixed = mixed.scatter(1, ids, at_window)  # a word held twice gets the same value twice
        if self.repeat == 1.0:
            return mixed
        newest = values[:, -1:] - 1  # (N, 1) the word just typed; -1: none
        applies = newest >= self.first_word_id  # (N, 1)
        newest = newest.clamp(min=0)
        kept = mixed.gather(1, newest)  # (N, 1) its log-probability
        # Its probability p becomes repeat * p; every word is divided by 1 - (1 - repeat) * p.
        norm = torch.where(applies, torch.log1p(-(1.0 - self.repeat) * kept.exp()), torch.zeros_like(kept))
        scaled = torch.where(applies, kept + math.log(self.repeat), kept)
        return (mixed - norm).scatter(1, newest, scaled - norm)
