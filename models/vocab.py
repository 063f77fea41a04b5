"""Vocabulary: word <-> id, built from the training split only.

Ids are deterministic for a given corpus: the special tokens come first, then
words by descending frequency, ties broken alphabetically (a ``set()`` would
give different ids on every run). The specials are ``<unk>`` (id 0), the line
break ``<eos>`` (id 1) and the end of a text ``<eot>`` (id 2); vocabularies
saved before ``<eot>`` existed have none, and their models never end a text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from models.tokenizer import END_OF_TEXT, LINE_BREAK, UNK

SPECIALS = (UNK, LINE_BREAK, END_OF_TEXT)
REQUIRED_SPECIALS = (UNK, LINE_BREAK)


class Vocabulary:
    """An ordered list of words; ``<unk>`` is id 0, ``<eos>`` id 1 and ``<eot>``, when there, id 2."""

    def __init__(self, words: list[str]) -> None:
        if list(words[: len(REQUIRED_SPECIALS)]) != list(REQUIRED_SPECIALS):
            raise ValueError(f"vocabulary must start with {REQUIRED_SPECIALS}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary has duplicate words")
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        self.unk_id = self.index[UNK]
        self.line_break_id = self.index[LINE_BREAK]
        self.end_id: int | None = self.index.get(END_OF_TEXT)
        self.special_ids = [self.index[word] for word in SPECIALS if word in self.index]  # never offered as words

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
