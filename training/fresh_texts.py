"""Suggestions as a person meets them: each text typed from an empty state, and chains of accepted suggestions.

``training.evaluate`` and ``training.keystrokes`` read a split as one
stream, so every word has hundreds of words of context and the recency
cache's window is always full. People type short texts from nothing: a
message, a search, a sentence in an editor. Here each text of a split is
typed alone, from the zero state and the leading line break that the
service puts before every text (``service.engine.inference``).

A text is a sentence: the tokens of a paragraph line up to and including
each ``.``, ``!`` or ``?``, headings (`` = Title = ``) left out. A sentence
is what a person typically types at once, and the shortest unit that is
still a whole text: a paragraph would give most words a long context again.
In a corpus of messages (``Corpus.texts == "lines"``: the chat corpus) a text
is a message, however short: a message of one or two words ("hello",
"lol") is typed from an empty state like any other, and counts.

Reported (``FreshTextResult``):

- the keystroke protocol of ``training.keystrokes`` over these texts:
  keystroke savings, next-word top-1 / top-3, and the echo rate (the top
  suggestion is the word just typed);
- the texts' perplexity;
- accept chains: from the start of each text (its first ``START_WORDS``
  tokens, each distinct start once, in the texts' order), take the top suggestion
  ``CHAIN_STEPS`` times, as a person pressing accept would, and count the
  chains with a back-to-back repeat (``the the``) and with any cycle (a run
  of words repeated at once: ``the the``, ``, the , the``).

Usage::

    texts = encode_texts(split_texts(corpus.test, tokenizer, corpus.texts), vocab)
    result = evaluate_fresh_texts(model, texts, vocab, device)
    print(format_fresh(result))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from models.tokenizer import Tokenizer, ends_sentence
from models.vocab import Vocabulary
from training.keystrokes import TypingResult, TypingTally, format_typing, top_suggestion

TEXTS_PER_BATCH = 32
START_WORDS = 3  # tokens of a text's start that an accept chain continues
CHAIN_STEPS = 12  # suggestions accepted in a row


@dataclass(frozen=True)
class ChainResult:
    chains: int
    back_to_back: float  # share of chains with a word repeated at once
    cycles: float  # share of chains with any run of words repeated at once (back to back included)
    examples: tuple[str, ...]  # the first few chains, start and accepted words

    def to_dict(self) -> dict:
        return asdict(self) | {"examples": list(self.examples)}


@dataclass(frozen=True)
class FreshTextResult:
    texts: int
    perplexity: float
    typing: TypingResult
    chains: ChainResult

    def to_dict(self) -> dict:
        return (
            {"texts": self.texts, "perplexity": self.perplexity}
            | self.typing.to_dict()
            | {"chains": self.chains.to_dict()}
        )


def split_texts(lines: list[str], tokenizer: Tokenizer, texts_are: str = "sentences") -> list[list[str]]:
    """The texts of ``lines`` as token lists: sentences, headings and empty lines left out; or with
    ``texts_are="lines"`` (a corpus of messages, ``Corpus.texts``) each non-empty line."""
    if texts_are == "lines":
        return [tokens for line in lines if (tokens := tokenizer.tokenize(line))]
    texts: list[list[str]] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or (stripped.startswith("=") and stripped.endswith("=")):
            continue
        sentence: list[str] = []
        for token in tokenizer.tokenize(stripped):
            sentence.append(token)
            if ends_sentence(token):
                texts.append(sentence)
                sentence = []
        if sentence:
            texts.append(sentence)
    return texts


def encode_texts(texts: list[list[str]], vocab: Vocabulary) -> list[list[int]]:
    """Each text's ids after the leading line break, as the service encodes a text."""
    return [[vocab.line_break_id, *vocab.encode(text)] for text in texts]


def padded(texts: list[list[int]], pad: int) -> Tensor:
    """(B, T) ids, each text right-padded with ``pad`` to the longest."""
    width = max(len(text) for text in texts)
    return torch.tensor([text + [pad] * (width - len(text)) for text in texts], dtype=torch.long)


@torch.inference_mode()
def evaluate_fresh_texts(
    model: nn.Module, texts: list[list[int]], vocab: Vocabulary, device: torch.device
) -> FreshTextResult:
    """Type every text of ``texts`` (ids from ``encode_texts``) from the zero state; run the accept chains."""
    was_training = model.training
    model.eval()
    tally = TypingTally(vocab, device)
    loss, scored = 0.0, 0
    by_length = sorted((text for text in texts if len(text) > 1), key=len)
    for first in range(0, len(by_length), TEXTS_PER_BATCH):
        rows = padded(by_length[first : first + TEXTS_PER_BATCH], pad=-1).to(device)  # (B, T)
        inputs, targets = rows[:, :-1], rows[:, 1:]
        logits, _ = model(inputs.clamp(min=0), model.zero_state(rows.size(0)))  # (B, T-1, V)
        real = targets >= 0  # (B, T-1)
        flat = logits[real].float()  # (N, V)
        loss -= flat.log_softmax(-1).gather(1, targets[real].unsqueeze(1)).sum().item()
        scored += int(real.sum())
        tally.add(flat, targets[real], inputs[real])
    chains = accept_chains(model, texts, vocab, device)
    model.train(was_training)
    return FreshTextResult(len(by_length), math.exp(loss / max(scored, 1)), tally.result(), chains)


@torch.inference_mode()
def accept_chains(model: nn.Module, texts: list[list[int]], vocab: Vocabulary, device: torch.device) -> ChainResult:
    """From each distinct text start, accept the top suggestion ``CHAIN_STEPS`` times; count the repeats."""
    starts = list(dict.fromkeys(tuple(text[: 1 + START_WORDS]) for text in texts if len(text) > START_WORDS))
    if not starts:
        return ChainResult(0, 0.0, 0.0, ())
    tokens = torch.tensor(starts, dtype=torch.long, device=device)  # (B, 1 + START_WORDS)
    specials = torch.tensor(vocab.special_ids, device=device)
    logits, state = model(tokens, model.zero_state(tokens.size(0)))
    accepted = []
    for _ in range(CHAIN_STEPS):
        word = top_suggestion(logits[:, -1].float(), specials)  # (B,)
        accepted.append(word)
        logits, state = model(word.unsqueeze(1), state)
    chains = torch.cat([tokens, torch.stack(accepted, 1)], dim=1).tolist()  # (B, 1 + START_WORDS + CHAIN_STEPS)
    begin = 1 + START_WORDS
    back_to_back = sum(repeat_period(chain, begin) == 1 for chain in chains)
    cycles = sum(repeat_period(chain, begin) > 0 for chain in chains)
    examples = tuple(
        " ".join(vocab.decode(chain[1:begin])) + " | " + " ".join(vocab.decode(chain[begin:])) for chain in chains[:5]
    )
    return ChainResult(len(chains), back_to_back / len(chains), cycles / len(chains), examples)


def repeat_period(words: list[int], begin: int) -> int:
    """The shortest run of words repeated at once that ends at or after ``begin``: 1 for ``a a``,
    2 for ``a b a b``; 0 when there is none."""
    for period in range(1, len(words) // 2 + 1):
        for end in range(max(begin, 2 * period - 1), len(words)):
            if words[end - period + 1 : end + 1] == words[end - 2 * period + 1 : end - period + 1]:
                return period
    return 0


def format_fresh(result: FreshTextResult) -> str:
    chains = result.chains
    return (
        f"fresh texts ({result.texts:,} sentences, each from an empty state): perplexity {result.perplexity:.1f}, "
        f"{format_typing(result.typing)}\n"
        f"accept chains ({chains.chains:,} starts, the top suggestion taken {CHAIN_STEPS} times): "
        f"{chains.back_to_back:.1%} with a word repeated back to back, {chains.cycles:.1%} with a cycle"
    )
