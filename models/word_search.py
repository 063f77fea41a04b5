"""Next words from a character-level model: a batched beam search up to the next word boundary.

A word is a run of letters, digits and apostrophes (``don't``, ``o'er``), or
one punctuation character. Its probability is the product of its characters'
probabilities and the probability that the word ends there (that the next
character is no letter, digit or apostrophe), so ``sun`` is not counted when
the text goes on as ``sunny``. Where the next word begins depends on how the
text ends:

- after a letter or digit, the current word goes on unless a space or a
  punctuation mark comes first: the search allows those two (one space);
- after white space, punctuation or nothing, a word starts at once;
- completing a partly typed word (the fragment is part of the text already
  read), the search only extends it.

All rows' beams step together in one (B*W, 1) model call; a beam leaves once
it cannot beat the row's k-th best finished word, since probabilities only
shrink. Usage::

    search = WordSearch(model, vocab, device)
    words, line_break = search.next_words(hidden, state, phases, k=5)
    # hidden (B, H) and state (S, L, B, H) after each row's text; phases (B,) from ``phase_after``
    # words: per row, up to k (text, probability) likeliest first; line_break (B,) P(next char is a line break)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from models.vocab import Vocabulary

BEFORE_WORD, AT_WORD_START, IN_WORD = 0, 1, 2
MAX_WORD_CHARACTERS = 24


def is_word_character(character: str) -> bool:
    return character.isalnum() or character in "'\u2019"


def phase_after(text: str, completing: bool) -> int:
    """Where the next word starts after ``text``: the phase the search starts in."""
    if completing:
        return IN_WORD
    if text and is_word_character(text[-1]):
        return BEFORE_WORD
    return AT_WORD_START


def fragment_of(text: str) -> str:
    """The partly typed word at the end of ``text``: its trailing letters, digits and apostrophes."""
    end = len(text)
    while end > 0 and is_word_character(text[end - 1]):
        end -= 1
    return text[end:]


class WordSearch:
    def __init__(
        self, model: torch.jit.ScriptModule, vocab: Vocabulary, device: torch.device, min_beams: int = 8
    ) -> None:
        self.model = model
        self.vocab = vocab
        self.min_beams = min_beams
        characters = vocab.words
        specials = set(vocab.special_ids)
        # (V,) masks over the character ids, on the model's device once.
        self.word = torch.tensor(
            [i not in specials and is_word_character(c) for i, c in enumerate(characters)], device=device
        )
        self.punctuation = torch.tensor(
            [i not in specials and not is_word_character(c) and not c.isspace() for i, c in enumerate(characters)],
            device=device,
        )
        self.space = torch.tensor([c == " " for c in characters], device=device)

    @torch.inference_mode()
    def next_words(
        self, hidden: Tensor, state: Tensor, phases: list[int], k: int
    ) -> tuple[list[list[tuple[str, float]]], Tensor]:
        """The k likeliest next words of each row, and each row's probability of a line break next."""
        device = hidden.device
        word, punctuation, space = self.word, self.punctuation, self.space
        rows, width, vocab_size = hidden.size(0), max(k, self.min_beams), len(self.vocab)
        # Beams live in a (B, W) layout; empty slots score -inf. Each row starts with one beam.
        score = torch.full((rows, width), float("-inf"), device=device)
        score[:, 0] = 0.0
        phase = torch.tensor(phases, device=device).unsqueeze(1).expand(rows, width).clone()  # (B, W)
        hidden = hidden.repeat_interleave(width, 0)  # (B*W, H)
        state = state.repeat_interleave(width, 2)  # (S, L, B*W, H)
        texts = [[""] * width for _ in range(rows)]
        found: list[list[tuple[float, str]]] = [[] for _ in range(rows)]
        line_break = torch.zeros(rows, device=device)
        for step in range(MAX_WORD_CHARACTERS):
            log_probs = self.model.decode(hidden, state).float().log_softmax(-1).view(rows, width, vocab_size)
            if step == 0:
                line_break = log_probs[:, 0, self.vocab.line_break_id].exp()
            total = score.unsqueeze(2) + log_probs  # (B, W, V)
            # Finished words: a word that ends here, and a punctuation mark before any word.
            ends = score + log_probs.masked_fill(word, float("-inf")).logsumexp(-1)  # (B, W)
            ends = ends.masked_fill(phase != IN_WORD, float("-inf"))
            marks = total.masked_fill(~punctuation | (phase == IN_WORD).unsqueeze(2), float("-inf"))
            self._collect(found, ends, marks, texts, k)
            # Beams that go on: a space before a word, a word's first or next character.
            goes_on = torch.where((phase == BEFORE_WORD).unsqueeze(2), space, word)  # (B, W, V)
            candidates = total.masked_fill(~goes_on, float("-inf")).view(rows, width * vocab_size)
            score, flat = candidates.topk(width, dim=-1)  # (B, W)
            # A beam that cannot beat a row's k-th finished word is dropped.
            bar = torch.tensor(
                [sorted(s for s, _ in words)[-k] if len(words) >= k else float("-inf") for words in found],
                device=device,
            )
            score = score.masked_fill(score <= bar.unsqueeze(1), float("-inf"))
            if not torch.isfinite(score).any():
                break
            parent, character = flat // vocab_size, flat % vocab_size  # (B, W) each
            chosen_space = space[character]
            phase = torch.where(chosen_space, AT_WORD_START, IN_WORD)
            source = (parent + torch.arange(rows, device=device).unsqueeze(1) * width).view(-1)  # (B*W,)
            texts = [
                [texts[r][p] + ("" if s else self.vocab.words[c]) for p, c, s in zip(ps, cs, ss, strict=True)]
                for r, (ps, cs, ss) in enumerate(
                    zip(parent.tolist(), character.tolist(), chosen_space.tolist(), strict=True)
                )
            ]
            out, state = self.model.encode(character.view(-1, 1), state.index_select(2, source))
            hidden = out[:, 0]
        return [_best(words, k) for words in found], line_break

    def _collect(
        self, found: list[list[tuple[float, str]]], ends: Tensor, marks: Tensor, texts: list[list[str]], k: int
    ) -> None:
        """Add each row's best finished words of this step, as (log-probability, text), to ``found``."""
        rows, width, vocab_size = marks.shape
        best_ends, end_beams = ends.topk(min(k, width), dim=-1)
        best_marks, mark_flat = marks.view(rows, -1).topk(k, dim=-1)
        for r in range(rows):
            for s, b in zip(best_ends[r].tolist(), end_beams[r].tolist(), strict=True):
                if s > float("-inf"):
                    found[r].append((s, texts[r][b]))
            for s, f in zip(best_marks[r].tolist(), mark_flat[r].tolist(), strict=True):
                if s > float("-inf"):
                    found[r].append((s, texts[r][f // vocab_size] + self.vocab.words[f % vocab_size]))


def _best(found: list[tuple[float, str]], k: int) -> list[tuple[str, float]]:
    """The k likeliest words; a word found twice (``.`` and `` .``) has both paths' probability."""
    probability: dict[str, float] = {}
    for log_probability, text in found:
        probability[text] = probability.get(text, 0.0) + math.exp(log_probability)
    return sorted(probability.items(), key=lambda item: -item[1])[:k]
