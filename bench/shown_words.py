"""What a person sees in the strip: every word /predict_next offers over the test split, checked
for corpus markup.

A person types the test split's sentences (``training.fresh_texts.split_texts``), written as
people write them (``Tokenizer.detokenize``: "well-known", "1,000"); at every word the server is
asked, over HTTP, for the next words and, half the time, for the completions of the word's first
one or two letters. Every offered ``word`` is checked for WikiText's markup (``@-@``, ``@,@``,
``@.@``) and the special tokens; the tokens that were markup are counted too, to show what the
display forms changed.

Usage::

    python -m bench.shown_words --model nextword:latest [--answers 10000] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import re

import httpx

from bench.launcher import Server
from models.tokenizer import Tokenizer
from training.corpus import load_corpus
from training.download import wikitext2_corpus
from training.fresh_texts import split_texts

MARKUP = re.compile(r"@[-,.]@|<unk>|<eos>|<eot>")
INPUTS_PER_REQUEST = 64
TOP_K = 5


def typed_prefixes(sentences: list[list[str]], answers: int, seed: int = 0) -> list[dict]:
    """``answers`` /predict_next inputs: a sentence's first words as a person writes them, then
    either a space (the next word) or the next word's first one or two letters (its completion)."""
    tokenizer = Tokenizer()
    rng = random.Random(seed)
    inputs: list[dict] = []
    for sentence in sentences:
        for position in range(len(sentence)):
            text = tokenizer.detokenize(sentence[:position])
            word = sentence[position]
            if rng.random() < 0.5 and word[0].isalnum():
                typed = word[: rng.choice((1, 2))]
                joined = text + ("" if not text else " ") + typed
                inputs.append({"text": joined, "top_k": TOP_K, "complete": True})
            else:
                inputs.append({"text": text + (" " if text else ""), "top_k": TOP_K})
            if len(inputs) == answers:
                return inputs
    return inputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--answers", type=int, default=10_000)
    parser.add_argument("--corpus", default=None, help="a corpus folder (default: make serve's)")
    args = parser.parse_args()
    corpus = load_corpus(args.corpus or wikitext2_corpus())
    inputs = typed_prefixes(split_texts(corpus.test, Tokenizer(), corpus.texts), args.answers)
    offered = markup_words = markup_tokens = 0
    examples: list[str] = []
    with Server(env={"NEXTWORD_MODEL": args.model}) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        for start in range(0, len(inputs), INPUTS_PER_REQUEST):
            chunk = inputs[start : start + INPUTS_PER_REQUEST]
            answer = http.post("/predict_next", json={"inputs": chunk})
            answer.raise_for_status()
            for item, result in zip(chunk, answer.json(), strict=True):
                for prediction in result["predictions"]:
                    offered += 1
                    markup_tokens += bool(MARKUP.search(prediction["token"]))
                    if MARKUP.search(prediction["word"]):
                        markup_words += 1
                        examples.append(f"{item['text'][-40:]!r} -> {prediction['word']!r}")
    report = {
        "model": args.model,
        "answers": len(inputs),
        "words_offered": offered,
        "words_with_markup": markup_words,
        "tokens_that_were_markup": markup_tokens,
        "examples": examples[:10],
    }
    print(json.dumps(report, indent=2))
    return 0 if markup_words == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
