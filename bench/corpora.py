"""Each model on each held-out set: WikiText-2's test sentences and the chat corpus's test messages.

For every model tag and every test set: the out-of-vocabulary rate of the test words and the
fresh-text figures (``training.fresh_texts``: each text typed from an empty state; perplexity,
keystroke savings, next-word top-1/top-3, echo, accept chains). The stream perplexity of a
model's own corpus is in its training record (``training.evaluate`` measures it on any).
Vocabularies differ between models, so keystroke savings are also given with the words a model
does not know counted as typed in full (``savings_all_words``): the protocol leaves them out of
both counts, which would flatter a small vocabulary. A lower-casing model reads a cased test
lower-cased; its suggestions are cased as the person types (``models.tokenizer.cased``).

Usage::

    python -m bench.corpora --models nextword:latest nextword-chat:latest nextword-mixed:latest
"""

from __future__ import annotations

import argparse
import json

import torch

from models.bundle import load_bundle
from models.vocab import UNK as UNKNOWN
from training.corpus import load_corpus
from training.download import named_corpus
from training.fresh_texts import encode_texts, evaluate_fresh_texts, split_texts

TEST_SETS = ("wikitext-2", "chitchat")


def typed_keystrokes(tokens: list[str]) -> int:
    """What a word costs typed in full, its separator included, as the keystroke protocol counts it."""
    return sum(len(token) + 1 for token in tokens)


@torch.inference_mode()
def measure(tag: str, test_set: str) -> dict:
    bundle = load_bundle(tag, torch.device("cpu"), torch.float32)
    corpus = load_corpus(named_corpus(test_set))
    tokenizer, vocab = bundle.tokenizer, bundle.vocab
    texts = split_texts(corpus.test, tokenizer, corpus.texts)
    words = [token for text in texts for token in text if token != UNKNOWN]  # WikiText's own <unk>: never typed
    unknown = [token for token in words if token not in vocab.index]
    fresh = evaluate_fresh_texts(bundle.model, encode_texts(texts, vocab), vocab, torch.device("cpu"))
    typing = fresh.typing
    # Savings over every word: the unknown ones cost their full length on both sides.
    without = typed_keystrokes([t for t in words if t in vocab.index and vocab.index[t] not in vocab.special_ids])
    with_suggestions = without * (1 - typing.keystroke_savings)
    extra = typed_keystrokes(unknown)
    return {
        "model": tag,
        "test_set": test_set,
        "texts": fresh.texts,
        "words": len(words),
        "oov_rate": len(unknown) / max(len(words), 1),
        "fresh": fresh.to_dict(),
        "savings_all_words": 1 - (with_suggestions + extra) / (without + extra),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--test-sets", nargs="+", default=list(TEST_SETS), choices=TEST_SETS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    print(
        f"{'model':<28} {'test set':<11} {'texts':>7} {'OOV':>6} {'fresh ppl':>9} "
        f"{'savings':>8} {'all words':>9} {'next top-1/3':>13} {'echo':>6} {'cycles':>7}"
    )
    for tag in args.models:
        for test_set in args.test_sets:
            result = measure(tag, test_set)
            fresh = result["fresh"]
            print(
                f"{tag:<28} {test_set:<11} {result['texts']:>7,} {result['oov_rate']:>6.1%} "
                f"{fresh['perplexity']:>9.1f} {fresh['keystroke_savings']:>8.1%} "
                f"{result['savings_all_words']:>9.1%} "
                f"{fresh['next_word_top1']:>6.1%}/{fresh['next_word_top3']:<6.1%} {fresh['echo_rate']:>6.2%} "
                f"{fresh['chains']['cycles']:>7.1%}",
                flush=True,
            )
            results.append(result)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
