"""Typos forgiven: keystroke savings on fresh texts with synthetic typos, with and without
``correct_typos``, through the service's own ``/predict_next`` code (``Engine.inline``, in process).

A person types each sentence of the test split (``training.fresh_texts.split_texts``) as people
write it (``Tokenizer.detokenize``), as the typing page does: before each letter of a word they
see the top 3 suggestions (the next words before its first letter, the completions after), the
words shown at the word's earlier letters sent as ``exclude``; one keystroke accepts the word
they mean with its separator. Keystrokes are counted as in ``training.keystrokes``: a word typed
as n characters costs n + 1 without suggestions, j + 1 when accepted after j.

The model of typos: ``--share`` of all words (5% by default, seeded) are mistyped, chosen among
the words of two or more letters; each gets one slip at a uniformly random letter, of one of four
kinds, equally likely: a key adjacent to the intended one on a QWERTY keyboard instead of it, an
adjacent key pressed as well (inserted before it), the letter missed, or the letter swapped with
the next one. A mistyped word costs what its typed characters cost; after the whole mistyped word
has been typed the person may still accept the word they meant (j = n, at no saving) before the
separator. A mistyped word is recovered when its intended word is shown at a letter after the
slip. Words outside the vocabulary are left out, as in the protocol.

Usage::

    python -m bench.typos --model nextword:latest [--share 0.05] [--seed 0] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
from collections.abc import Generator
from dataclasses import asdict, dataclass

import torch

from models.tokenizer import shown
from models.typos import ADJACENT
from service.engine.engine import Engine, EngineConfig
from service.engine.types import NextWordQuery, NextWords
from training.corpus import load_corpus
from training.download import wikitext2_corpus
from training.fresh_texts import split_texts

SHOWN = 3  # suggestions the person reads, as in training.keystrokes
LANES = 64  # sentences typed side by side: one batch of /predict_next inputs


@dataclass(frozen=True)
class Slip:
    """One typo in a word: what the person types instead, and the first letter that shows it."""

    typed: str
    shows_at: int  # the typed prefix differs from the intended word's from this many letters on


def slip(word: str, rng: random.Random) -> Slip:
    """One random slip of ``word`` (letters only, two or more), by the model of typos above."""
    while True:
        at = rng.randrange(len(word))
        kind = rng.choice(("adjacent", "extra", "missed", "swapped"))
        letter = word[at]
        neighbours = sorted(ADJACENT.get(letter.lower(), ()))
        if kind == "adjacent" and neighbours:
            other = rng.choice(neighbours)
            return Slip(word[:at] + (other.upper() if letter.isupper() else other) + word[at + 1 :], at + 1)
        if kind == "extra" and neighbours:
            other = rng.choice(neighbours)
            return Slip(word[:at] + (other.upper() if letter.isupper() else other) + word[at:], at + 1)
        if kind == "missed":
            return Slip(word[:at] + word[at + 1 :], at + 1)
        if kind == "swapped" and at + 1 < len(word) and word[at + 1] != letter:
            return Slip(word[:at] + word[at + 1] + letter + word[at + 2 :], at + 1)


@dataclass
class Tally:
    without: int = 0
    with_suggestions: int = 0
    words: int = 0
    mistyped: int = 0
    mistyped_open: int = 0  # mistyped words not yet accepted when the slip was typed
    recovered: int = 0  # of those, the intended word shown at a letter after the slip

    def report(self) -> dict:
        return asdict(self) | {
            "keystroke_savings": 1 - self.with_suggestions / max(self.without, 1),
            "recovered_share": self.recovered / max(self.mistyped_open, 1),
        }


Typing = Generator[NextWordQuery, NextWords, None]


def type_sentence(tokens: list[str], slips: dict[int, Slip], engine: Engine, correct: bool, tally: Tally) -> Typing:
    """Type one sentence word by word, yielding each keystroke's /predict_next input and counting."""
    vocab, tokenizer = engine.vocab, engine.tokenizer
    for i, token in enumerate(tokens):
        before = tokenizer.detokenize(tokens[:i])
        if token not in vocab.index or vocab.index[token] in vocab.special_ids:
            continue  # an unknown word: neither typed nor suggested, as in the protocol
        written = shown(token).text
        glue = "" if (i and shown(tokens[i - 1]).joins_next) or shown(token).joins_previous else " "
        mistake = slips.get(i)
        typed = mistake.typed if mistake else written
        cost, passed = len(typed) + 1, []
        for j in range(len(typed) + (1 if mistake else 0)):
            text = before + glue + typed[:j] if j else (before + " " if before else "")
            answer = yield NextWordQuery(text, SHOWN, complete=True, exclude=tuple(passed), correct_typos=correct)
            offered = [p["token"] for p in answer["predictions"]]
            if token in offered:
                cost = min(j + 1, len(typed) + 1)
                if mistake and j >= mistake.shows_at:
                    tally.recovered += 1
                break
            passed += offered
        tally.words += 1
        tally.without += len(typed) + 1
        tally.with_suggestions += cost
        if mistake:
            tally.mistyped += 1
            tally.mistyped_open += cost > mistake.shows_at


def run(engine: Engine, sentences: list[list[str]], slips: list[dict[int, Slip]], correct: bool) -> Tally:
    """Type every sentence, ``LANES`` at a time, each keystroke batch in one ``predict_next`` call."""
    tally = Tally()
    waiting = iter(zip(sentences, slips, strict=True))
    lanes: list[tuple[Typing, NextWordQuery]] = []  # each typing sentence and its next keystroke's input

    def refill() -> None:
        while len(lanes) < LANES:
            for sentence, sentence_slips in waiting:
                typing = type_sentence(sentence, sentence_slips, engine, correct, tally)
                first = next(typing, None)
                if first is not None:
                    lanes.append((typing, first))
                    break
            else:
                return

    refill()
    while lanes:
        answers = engine.run_predict_next([query for _, query in lanes])
        going = []
        for (typing, _), answer in zip(lanes, answers, strict=True):
            with contextlib.suppress(StopIteration):  # a sentence typed to its end leaves
                going.append((typing, typing.send(answer)))
        lanes[:] = going
        refill()
    return tally


def choose_slips(sentences: list[list[str]], vocab_index: dict[str, int], share: float, seed: int) -> list[dict]:
    """``share`` of all typed words, chosen among those of two or more letters, each with one slip."""
    rng = random.Random(seed)
    typed = [(s, i) for s, sentence in enumerate(sentences) for i, token in enumerate(sentence) if token in vocab_index]
    eligible = [(s, i) for s, i in typed if len(sentences[s][i]) >= 2 and sentences[s][i].isalpha()]
    chosen = rng.sample(eligible, min(len(eligible), round(share * len(typed))))
    slips: list[dict[int, Slip]] = [{} for _ in sentences]
    for s, i in sorted(chosen):
        slips[s][i] = slip(sentences[s][i], rng)
    return slips


@torch.inference_mode()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--share", type=float, default=0.05, help="share of all words mistyped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", default=None, help="a corpus folder (default: make serve's)")
    args = parser.parse_args()
    engine = Engine.inline(args.model, EngineConfig())
    bundle = engine.bundle
    corpus = load_corpus(args.corpus or wikitext2_corpus())
    sentences = split_texts(corpus.test, bundle.tokenizer, corpus.texts)
    clean: list[dict[int, Slip]] = [{} for _ in sentences]
    mistyped = choose_slips(sentences, bundle.vocab.index, args.share, args.seed)
    report: dict = {"model": args.model, "sentences": len(sentences), "share": args.share, "seed": args.seed}
    print(f"{len(sentences):,} sentences, {args.model}, {args.share:.0%} of words mistyped (seed {args.seed})")
    print(f"{'text':<8} {'correct_typos':<14} {'savings':>8} {'words':>7} {'mistyped':>9} {'recovered':>10}")
    for name, slips in (("clean", clean), ("typos", mistyped)):
        for correct in (False, True):
            tally = run(engine, sentences, slips, correct)
            figures = tally.report()
            recovered = f"{figures['recovered_share']:.1%}" if tally.mistyped else "-"
            print(
                f"{name:<8} {str(correct).lower():<14} {figures['keystroke_savings']:>8.2%} {tally.words:>7,} "
                f"{tally.mistyped:>9,} {recovered:>10}",
                flush=True,
            )
            report[f"{name}_{'corrected' if correct else 'exact'}"] = figures
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
