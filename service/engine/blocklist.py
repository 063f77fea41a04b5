"""Words never offered: the operator's blocklist (``NEXTWORD_BLOCKLIST``) and a request's ``exclude``.

A listed word blocks every vocabulary token written as it, whatever its case: ``damn`` blocks
``damn``, ``Damn`` and ``DAMN``, and ``-`` blocks ``@-@`` (``models.tokenizer.shown``), as does
``@-@`` itself, the ``token`` an answer names beside the word. People
list words as they write them, and a word that slips through in another case is still shown.

The blocklist's tokens are masked before the top-k (``models.scoring``'s ``blocked``), so an
answer holds the k likeliest of the remaining words, not a shorter list, in the same order with
the same probabilities; generation never samples them. A request's ``exclude`` is small and its
own: its tokens are dropped from a top-k taken that many words larger.

Usage::

    blocklist = Blocklist(vocab, ["damn", "hell"], device)
    blocklist.ids      # the blocked token ids, for the answers' filter
    blocklist.tensor   # the same as a tensor for the scorer, or None when nothing is blocked
    blocklist.matching(["Darn"])  # the ids a request's exclude list names
    blocklist.written  # the listed words, lower-cased: a character-level model's words are no tokens
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import Tensor

from models.tokenizer import shown
from models.vocab import Vocabulary


class Blocklist:
    """The vocabulary's tokens by how they are written, and the ones the operator blocked."""

    def __init__(self, vocab: Vocabulary, words: Iterable[str], device: torch.device) -> None:
        self.by_written: dict[str, list[int]] = defaultdict(list)  # a lower-cased written form -> its ids
        specials = set(vocab.special_ids)
        for i, token in enumerate(vocab.words):
            if i not in specials:
                written = shown(token).text.lower()
                self.by_written[written].append(i)
                if token.lower() != written:  # the answers' "token" names it too ("@-@")
                    self.by_written[token.lower()].append(i)
        self.written = frozenset(word.strip().lower() for word in words)  # for a character-level model's words
        self.ids = self.matching(self.written)
        self.tensor: Tensor | None = torch.tensor(sorted(self.ids), device=device) if self.ids else None

    def matching(self, words: Iterable[str]) -> frozenset[int]:
        """The ids of every token written as one of ``words``, ignoring case."""
        return frozenset(i for word in words for i in self.by_written.get(word.strip().lower(), ()))
