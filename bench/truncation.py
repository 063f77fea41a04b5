"""What reading only a text's end costs: keystroke savings with /predict_next's ``truncate``
windows of N tokens against the whole text.

The test split is typed as one stream, with ``training.keystrokes``' protocol. The whole text:
the model reads everything before each word, its state carried across the split
(``simulate_typing``). A window of N: before each word the model reads only the last N tokens,
after a line break and from a fresh state, as the service does with ``"truncate": N``; the
recency cache sees those tokens only. The same served model (float32) scores both.

Usage::

    python -m bench.truncation --model nextword:latest [--windows 64 128 256]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from models.bundle import load_bundle
from models.scoring import compile_scorer
from training.corpus import load_corpus
from training.data import encode_stream
from training.download import wikitext2_corpus
from training.keystrokes import TypingTally, format_typing, simulate_typing

WINDOWS_PER_BATCH = 256


@torch.inference_mode()
def typing_with_window(model, normalized: bool, stream: torch.Tensor, vocab, window: int) -> dict:
    """The protocol's figures when each word is predicted from the last ``window`` tokens alone."""
    scorer = compile_scorer(model, normalized)
    tally = TypingTally(vocab, torch.device("cpu"))
    positions = list(range(1, len(stream)))  # predict stream[t] from what comes before it
    for first in range(0, len(positions), WINDOWS_PER_BATCH):
        batch = positions[first : first + WINDOWS_PER_BATCH]
        rows = [[vocab.line_break_id, *stream[max(0, t - window) : t].tolist()] for t in batch]
        width = max(len(row) for row in rows)
        # Right-padded and read at each row's own last token, as the service runs a batch (models.scoring).
        tokens = torch.tensor([row + [vocab.line_break_id] * (width - len(row)) for row in rows])
        lengths = torch.tensor([len(row) for row in rows])
        state = model.zero_state(len(rows))
        hidden, state = scorer.prefill(tokens, lengths, state, state.new_zeros(len(rows), state.size(-1)))
        logits = model.decode(hidden, state).float()  # (B, V)
        targets = stream[torch.tensor(batch)]
        previous = stream[torch.tensor(batch) - 1]
        tally.add(logits, targets, previous)
    return tally.result().to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--windows", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--corpus", default=None, help="a corpus folder (default: make serve's)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    bundle = load_bundle(args.model, torch.device("cpu"), torch.float32)
    corpus = load_corpus(args.corpus or wikitext2_corpus())
    stream = encode_stream(corpus.test, bundle.tokenizer, bundle.vocab)
    whole = simulate_typing(bundle.model, stream, bundle.vocab, torch.device("cpu"))
    print(f"whole text: {format_typing(whole)}", flush=True)
    report = {"model": args.model, "whole": whole.to_dict(), "windows": {}}
    for window in args.windows:
        started = time.perf_counter()
        result = typing_with_window(bundle.model, bundle.config.log_probabilities, stream, bundle.vocab, window)
        loss = whole.keystroke_savings - result["keystroke_savings"]
        print(
            f"window {window}: keystroke savings {result['keystroke_savings']:.1%} ({loss * 100:+.2f} points "
            f"below the whole text), next word top-3 {result['next_word_top3']:.1%}, "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        report["windows"][window] = result
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
