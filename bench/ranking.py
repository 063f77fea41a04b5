"""Which words to show: keystroke savings on fresh texts for each way of choosing the three.

Each sentence of the test split is typed from an empty state (``training.fresh_texts``) with
``training.keystrokes``' protocol, and the shown words are chosen four ways: by probability (the
API's order), by expected keystrokes saved (probability times the letters left to type), and
each of those with the words shown at an earlier letter of the same word left out (the user
typed past them; the typing page sends them as ``exclude``). The same logits feed all four.

Usage::

    python -m bench.ranking --model nextword:latest [--corpus DIR]
"""

from __future__ import annotations

import argparse
import json

import torch

from models.bundle import load_bundle
from training.corpus import load_corpus
from training.download import wikitext2_corpus
from training.fresh_texts import TEXTS_PER_BATCH, encode_texts, padded, split_texts
from training.keystrokes import RANKINGS, TypingTally

CHOICES = [(ranking, hide_passed) for hide_passed in (False, True) for ranking in RANKINGS]


@torch.inference_mode()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--corpus", default=None, help="a corpus folder (default: make serve's)")
    args = parser.parse_args()
    bundle = load_bundle(args.model, torch.device("cpu"), torch.float32)
    corpus = load_corpus(args.corpus or wikitext2_corpus())
    texts = encode_texts(split_texts(corpus.test, bundle.tokenizer, corpus.texts), bundle.vocab)
    tallies = {choice: TypingTally(bundle.vocab, torch.device("cpu"), *choice) for choice in CHOICES}
    by_length = sorted((text for text in texts if len(text) > 1), key=len)
    for first in range(0, len(by_length), TEXTS_PER_BATCH):
        rows = padded(by_length[first : first + TEXTS_PER_BATCH], pad=-1)  # (B, T)
        inputs, targets = rows[:, :-1], rows[:, 1:]
        logits, _ = bundle.model(inputs.clamp(min=0), bundle.model.zero_state(rows.size(0)))
        real = targets >= 0
        for tally in tallies.values():
            tally.add(logits[real].float(), targets[real], inputs[real])
    report = {"model": args.model, "texts": len(by_length), "choices": []}
    print(f"{len(by_length):,} fresh texts, {args.model}")
    print(f"{'shown by':<12} {'passed words':<14} {'savings':>8} {'next top-3':>11} {'1 letter top-3':>15}")
    for (ranking, hide_passed), tally in tallies.items():
        result = tally.result()
        print(
            f"{ranking:<12} {'hidden' if hide_passed else 'shown again':<14} {result.keystroke_savings:>8.2%} "
            f"{result.next_word_top3:>11.1%} {result.after_1_letter_top3:>15.1%}"
        )
        report["choices"].append({"ranking": ranking, "hide_passed": hide_passed} | result.to_dict())
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
