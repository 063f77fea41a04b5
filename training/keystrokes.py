"""Keystroke savings: how much typing the model's suggestions save a simulated user.

The protocol (the standard measure of word-prediction systems, with the
service's own suggestions):

- The user types the test split word by word, each word (every token but
  the specials: line breaks and the end of the text) letter by letter, followed by one separator keystroke. Without
  suggestions a word of n characters costs n + 1 keystrokes.
- Before each letter, after j = 0, 1, ..., n - 1 typed letters, the user sees
  the top 3 suggestions the service would show: the next words when j = 0
  (``/predict_next``), the words that start with the j typed letters when
  j > 0 (``"complete": true``); the specials are never suggested.
  When the intended word is among them, one keystroke accepts it with its
  separator: the word costs j + 1. A word never suggested costs n + 1.
- Keystroke savings rate = 1 - (keystrokes with suggestions) / (without).
- Words the vocabulary lacks (``<unk>`` in the split) cannot be suggested and
  their letters are unknown, so they are left out of both counts. The model
  reads the true text before each word (the user's earlier words are right),
  with the state carried across the split as in ``training.evaluate``.

Also reported: top-1 and top-3 hit rates of next words (j = 0), and of
completions after 1 and 2 typed letters (over the words longer than that);
and the echo rate, the share of words before which the top suggestion was
the word just typed (a text repeats a word back to back very rarely, so a
suggestion that does mostly shows the recency cache echoing the user).

The shown words are the likeliest ones. ``TypingTally``'s options measure two
other choices: ``ranking="keystrokes"``, the words expected to save the most
keystrokes (probability times letters left), and ``hide_passed``, which
leaves out the words already shown at an earlier letter of the same word
(``bench/ranking.py`` compares them; docs/benchmarks.md has the figures).

``simulate_typing`` reads the split as one stream; ``training.fresh_texts``
types each text of it from an empty state, as people start a text.

Usage::

    result = simulate_typing(model, test_stream, vocab, device)
    result.keystroke_savings  # e.g. 0.41
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from models.completion import PrefixIndex
from models.vocab import Vocabulary
from training.data import EVAL_BATCH_SIZE, EVAL_BPTT, batchify, bptt_windows

SHOWN = 3  # suggestions the simulated user reads
# How the shown words are chosen: the likeliest, or those expected to save the most keystrokes.
RANKINGS = ("probability", "keystrokes")


@dataclass(frozen=True)
class TypingResult:
    keystroke_savings: float
    words: int
    next_word_top1: float
    next_word_top3: float
    after_1_letter_top1: float
    after_1_letter_top3: float
    after_2_letters_top1: float
    after_2_letters_top3: float
    echo_rate: float  # share of the words whose top next-word suggestion was the word just typed

    def to_dict(self) -> dict:
        return asdict(self)


class _PrefixSpans:
    """For every word id and j, the span of the sorted words that start with its first j letters."""

    def __init__(self, vocab: Vocabulary, device: torch.device) -> None:
        index = PrefixIndex(vocab)
        longest = max(len(word) for word in index.sorted_words)
        low = [[0] * longest for _ in vocab.words]  # j >= len(word), and the specials: an empty span
        high = [[0] * longest for _ in vocab.words]
        for word, i in zip(index.sorted_words, index.sorted_ids, strict=True):
            for j in range(len(word)):
                low[i][j], high[i][j] = index.span(word[:j])
        self.places = index.places.to(device)  # (V,) each id's place in sorted order
        self.low, self.high = torch.tensor(low, device=device), torch.tensor(high, device=device)  # (V, J)
        self.length = torch.tensor([len(w) for w in vocab.words], device=device)  # (V,)
        self.specials = torch.tensor(vocab.special_ids, device=device)
        self.typable = torch.ones(len(vocab), dtype=torch.bool, device=device)  # (V,)
        self.typable[self.specials] = False


def _ranks(logits: Tensor, target: Tensor, spans: _PrefixSpans) -> Tensor:
    """(N, J): how many words that start with the target's first j letters the model rates above it.

    Only the words that beat the target matter, and for j >= 1 only those
    that share its first letter, which are few: they are listed once, and
    each j counts the ones inside its span.
    """
    beats = logits > logits.gather(1, target.unsqueeze(1))  # (N, V)
    ranks = torch.zeros(target.numel(), spans.low.size(1), dtype=torch.long, device=target.device)
    ranks[:, 0] = beats.count_nonzero(1) - beats[:, spans.specials].count_nonzero(1)  # specials are never shown
    low, high = spans.low[target], spans.high[target]  # (N, J)
    same_first_letter = (spans.places >= low[:, 1:2]) & (spans.places < high[:, 1:2])  # (N, V)
    row, word = (beats & same_first_letter).nonzero(as_tuple=True)  # (M,) each
    place = spans.places[word]  # (M,)
    for j in range(1, int(spans.length[target].max())):
        inside = (place >= low[row, j]) & (place < high[row, j])
        ranks[:, j] = torch.bincount(row[inside], minlength=target.numel())
    return ranks


def _ranks_as_shown(logits: Tensor, target: Tensor, spans: _PrefixSpans, ranking: str, hide_passed: bool) -> Tensor:
    """``_ranks`` for the other ways of choosing the shown words, one j after another.

    ``ranking="keystrokes"`` orders the words by ``keystroke_score``, which changes with j.
    ``hide_passed`` leaves out the words shown at an earlier j of the same word: the user typed
    past them, so they are not the word (the typing page sends them as ``exclude``).
    """
    rows = target.numel()
    length = spans.length.to(logits.dtype)  # (V,)
    ranks = torch.zeros(rows, spans.low.size(1), dtype=torch.long, device=target.device)
    passed = torch.zeros_like(logits, dtype=torch.bool)  # (N, V)
    passed[:, spans.specials] = True  # never shown
    low, high = spans.low[target], spans.high[target]  # (N, J)
    for j in range(int(spans.length[target].max())):
        scores = logits if ranking == "probability" else keystroke_score(logits, length, j)  # (N, V)
        candidates = ~passed
        if j > 0:
            candidates &= (spans.places >= low[:, j : j + 1]) & (spans.places < high[:, j : j + 1])
        ranks[:, j] = ((scores > scores.gather(1, target.unsqueeze(1))) & candidates).count_nonzero(1)
        if hide_passed:
            best, shown = scores.masked_fill(~candidates, float("-inf")).topk(SHOWN, dim=1)
            passed.scatter_(1, shown, best > float("-inf"))
    return ranks


def keystroke_score(logits: Tensor, length: Tensor, typed: int) -> Tensor:
    """A word's expected keystrokes saved if shown after ``typed`` of its letters, as a log: its
    log-probability (up to a row's constant) plus the log of the letters left to type, at least 1."""
    return logits + (length - typed).clamp(min=1).log()


class TypingTally:
    """Counts the protocol over batches of scored positions; ``result()`` gives the figures."""

    def __init__(
        self, vocab: Vocabulary, device: torch.device, ranking: str = "probability", hide_passed: bool = False
    ) -> None:
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {RANKINGS}, not {ranking!r}")
        self.spans = _PrefixSpans(vocab, device)
        self.ranking, self.hide_passed = ranking, hide_passed
        self.without = self.with_suggestions = self.words = self.echoes = 0
        self.hits = torch.zeros(3, 2, dtype=torch.long)  # (j, top-1 / top-3)
        self.counted = torch.zeros(3, dtype=torch.long)  # words longer than j letters

    def add(self, logits: Tensor, target: Tensor, previous: Tensor) -> None:
        """(N, V) next-word scores, the (N,) words typed next and the (N,) tokens just before them."""
        spans = self.spans
        keep = spans.typable[target]
        logits, target, previous = logits[keep], target[keep], previous[keep]
        if target.numel() == 0:
            return
        if self.ranking == "probability" and not self.hide_passed:
            rank = _ranks(logits, target, spans)  # (N, J)
        else:
            rank = _ranks_as_shown(logits, target, spans, self.ranking, self.hide_passed)
        length = spans.length[target]  # (N,)
        typed = torch.arange(rank.size(1), device=target.device) < length.unsqueeze(1)  # (N, J): j < n
        shown = (rank < SHOWN) & typed
        found = shown.any(1)
        first = shown.int().argmax(1)  # the first j at which the word is shown
        self.without += int((length + 1).sum())
        self.with_suggestions += int(torch.where(found, first + 1, length + 1).sum())
        self.words += target.numel()
        self.echoes += int((top_suggestion(logits, spans.specials) == previous).sum())
        for j in range(3):
            longer = length > j
            self.counted[j] += int(longer.sum())
            self.hits[j, 0] += int(((rank[:, j] < 1) & longer).sum())
            self.hits[j, 1] += int(((rank[:, j] < SHOWN) & longer).sum())

    def result(self) -> TypingResult:
        rate = self.hits.double() / self.counted.clamp(min=1).unsqueeze(1).double()
        return TypingResult(
            keystroke_savings=1 - self.with_suggestions / max(self.without, 1),
            words=self.words,
            next_word_top1=rate[0, 0].item(),
            next_word_top3=rate[0, 1].item(),
            after_1_letter_top1=rate[1, 0].item(),
            after_1_letter_top3=rate[1, 1].item(),
            after_2_letters_top1=rate[2, 0].item(),
            after_2_letters_top3=rate[2, 1].item(),
            echo_rate=self.echoes / max(self.words, 1),
        )


def top_suggestion(logits: Tensor, specials: Tensor) -> Tensor:
    """(N, V) scores -> (N,) the first word ``/predict_next`` shows: the best one that is no
    special, the lowest id (the more frequent word) among equals, as ``argmax`` picks."""
    return logits.index_fill(1, specials, float("-inf")).argmax(1)


@torch.inference_mode()
def simulate_typing(model: nn.Module, stream: Tensor, vocab: Vocabulary, device: torch.device) -> TypingResult:
    """Run the protocol above over ``stream`` (1-D ids)."""
    was_training = model.training
    model.eval()
    tally = TypingTally(vocab, device)
    rows = batchify(stream, EVAL_BATCH_SIZE).to(device)
    state = model.zero_state(EVAL_BATCH_SIZE)
    for inputs, targets in bptt_windows(rows, EVAL_BPTT):
        logits, state = model(inputs, state)  # (B, T, V)
        tally.add(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), inputs.reshape(-1))
    model.train(was_training)
    return tally.result()


def format_typing(result: TypingResult) -> str:
    return (
        f"keystroke savings {result.keystroke_savings:.1%} over {result.words:,} words "
        f"(top 3 shown); hits top-1/top-3: next word {result.next_word_top1:.1%}/{result.next_word_top3:.1%}, "
        f"after 1 letter {result.after_1_letter_top1:.1%}/{result.after_1_letter_top3:.1%}, "
        f"after 2 letters {result.after_2_letters_top1:.1%}/{result.after_2_letters_top3:.1%}; "
        f"top suggestion = the word just typed {result.echo_rate:.2%}"
    )
