"""Word-level accuracy of ``/predict_next`` for any stored models, word- or character-level alike.

Each model answers the same questions through the service's own
``Engine.run_predict_next`` (in process, float32): at sampled places of the
test split, the text of the line so far, as people type it, and the word
that comes next. Only words of letters and digits are asked, the words both
kinds of model can name (a word model cannot name one outside its
vocabulary; that counts as a miss). Usage::

    python -m bench.next_word_accuracy nextword:latest nextword-char:latest [--places 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from models.tokenizer import Tokenizer
from service.engine.engine import Engine, EngineConfig
from service.engine.types import NextWordQuery
from training.corpus import load_corpus
from training.download import wikitext2_corpus

CONTEXT_TOKENS = 40
BATCH = 32


def questions(lines: list[str], places: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text so far, next word) at ``places`` random places of the split, the same for every model."""
    words = Tokenizer()
    candidates = []
    for line in lines:
        tokens = words.tokenize(line)
        for i, token in enumerate(tokens):
            if i and token.isalnum():
                candidates.append((tokens[max(0, i - CONTEXT_TOKENS) : i], token))
    chosen = random.Random(seed).sample(candidates, min(places, len(candidates)))
    return [(words.detokenize(before), word) for before, word in chosen]


def accuracy(tag: str, asked: list[tuple[str, str]]) -> dict:
    engine = Engine.inline(tag, EngineConfig())
    bundle = engine.bundle
    top1 = top5 = 0
    started = time.perf_counter()
    for start in range(0, len(asked), BATCH):
        chunk = asked[start : start + BATCH]
        answers = engine.run_predict_next([NextWordQuery(text, 5) for text, _ in chunk])
        for (_, word), answer in zip(chunk, answers, strict=True):
            named = [p["token"] for p in answer["predictions"]]  # the corpus's own form, as the words asked
            top1 += named[:1] == [word]
            top5 += word in named
    seconds = time.perf_counter() - started
    level = bundle.tokenizer.settings.level
    return {"model": tag, "level": level, "top1": top1 / len(asked), "top5": top5 / len(asked), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.next_word_accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("tags", nargs="+", help="model tags in the BentoML store")
    parser.add_argument("--corpus", default="auto")
    parser.add_argument("--places", type=int, default=1000, help="how many places of the test split to ask")
    args = parser.parse_args(argv)
    corpus = load_corpus(wikitext2_corpus() if args.corpus == "auto" else args.corpus)
    asked = questions(corpus.test, args.places)
    print(f"{len(asked):,} places of the test split; next words of letters and digits")
    print(f"{'model':34s} {'level':5s} {'top-1':>7s} {'top-5':>7s} {'ms/question':>12s}")
    for tag in args.tags:
        result = accuracy(tag, asked)
        print(
            f"{result['model']:34s} {result['level']:5s} {result['top1']:7.1%} {result['top5']:7.1%} "
            f"{result['seconds'] * 1000 / len(asked):12.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
