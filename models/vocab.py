"""Vocabulary: word <-> id, built from the training split only.

Ids are deterministic for a given corpus: the special tokens come first, then
words by descending frequency, ties broken alphabetically (a ``set()`` would
give different ids on every run).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from models.tokenizer import EOS, UNK

SPECIALS = (UNK, EOS)


class Vocabulary:
    """An ordered list of words; ``<unk>`` is id 0 and ``<eos>`` id 1."""

    def __init__(self, words: list[str]) -> None:
        if list(words[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary has duplicate words")
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        self.unk_id = self.index[UNK]
        self.eos_id = self.index[EOS]

    @classmethod
    def build(cls, tokens: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> Vocabulary:
        """Count ``tokens``, drop words seen fewer than ``min_freq`` times, keep the top ``max_size``."""
        counts = Counter(tokens)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(
            (word for word, n in counts.items() if n >= min_freq),
            key=lambda word: (-counts[word], word),
        )
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *ranked])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Token strings -> ids; unknown words map to ``<unk>``."""
        unk = self.unk_id
        return [self.index.get(token, unk) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids]
