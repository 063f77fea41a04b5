"""Which vocabulary words complete a partly typed word: a sorted index, built once per model.

Sorted, the words that start with a fragment sit side by side, so two binary
searches turn any fragment into one span of places, and the batched scoring
call reads just that slice of a row's logits (``models.scoring``): no request
scans the vocabulary. The fragment must be read by the model's tokenizer
first, so a lower-casing model matches case-insensitively and a cased one
exactly.

Usage::

    index = PrefixIndex(vocab)
    low, high = index.span("rel")  # places [low, high): "relate", ..., "religious", ...
    index.sorted_ids[low:high]     # their ids
    index.places                   # (V,) each id's place; the specials after every word

    Corrections(index).of("goverm")  # {id of "government": 0.0, ...}: words one slip away, log-weighted
"""

from __future__ import annotations

import math
from bisect import bisect_left

import torch

from models.typos import MIN_CORRECTED_CHARACTERS, intended_prefixes
from models.vocab import Vocabulary

_AFTER_EVERY_CHARACTER = chr(0x10FFFF)


class PrefixIndex:
    """The vocabulary's words in sorted order; special tokens are in no span."""

    def __init__(self, vocab: Vocabulary) -> None:
        specials = set(vocab.special_ids)
        ordered = sorted((word, i) for i, word in enumerate(vocab.words) if i not in specials)
        self.sorted_words = [word for word, _ in ordered]
        self.sorted_ids = [i for _, i in ordered]
        self.size = len(ordered)
        place = [self.size] * len(vocab)  # the specials: after every word, so in no span
        for position, i in enumerate(self.sorted_ids):
            place[i] = position
        self.place_of = place  # for lookups from Python
        self.places = torch.tensor(place, dtype=torch.long)  # (V,)

    def span(self, fragment: str) -> tuple[int, int]:
        """Places ``[low, high)`` of the words that start with ``fragment``; empty when none does."""
        low = bisect_left(self.sorted_words, fragment)
        return low, bisect_left(self.sorted_words, fragment + _AFTER_EVERY_CHARACTER, low)


class Corrections:
    """The words a fragment may have been meant as, one slip away (``models.typos``), with weights."""

    def __init__(self, index: PrefixIndex) -> None:
        self.index = index

    def of(self, fragment: str) -> dict[int, float]:
        """Word ids that start with a prefix one slip from ``fragment`` but not with ``fragment``
        itself, each with its slip's log-weight; empty for a fragment too short to correct."""
        if len(fragment) < MIN_CORRECTED_CHARACTERS:
            return {}
        exact_low, exact_high = self.index.span(fragment)
        found: dict[int, float] = {}
        for prefix, weight in intended_prefixes(fragment).items():
            low, high = self.index.span(prefix)
            for place in range(low, high):
                if exact_low <= place < exact_high:
                    continue
                word = self.index.sorted_ids[place]
                if weight > found.get(word, -math.inf):
                    found[word] = weight
        return found
