"""Perplexity and top-k next-word accuracy, in training or against the store.

From the command line it also prints the keystroke savings of the model's
suggestions (``training.keystrokes``), over the split read as one stream and over
its texts typed one by one from an empty state (``training.fresh_texts``).

Usage::

    python -m training.evaluate nextword:latest [--corpus DIR] [--device auto] [--precision auto]

loads the model from the BentoML store (no training code state involved) and
evaluates it on the corpus's test split with the vocabulary saved beside it,
in the precision the service would use (``--precision``, as NEXTWORD_PRECISION).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from models.bundle import load_bundle
from models.device import DEVICE_CHOICES, PRECISION_CHOICES, pick_device, pick_dtype, precision_name
from training.corpus import CorpusError, load_corpus
from training.data import EVAL_BATCH_SIZE, EVAL_BPTT, batchify, bptt_windows, encode_stream
from training.download import named_corpus
from training.fresh_texts import encode_texts, evaluate_fresh_texts, format_fresh, split_texts
from training.keystrokes import format_typing, simulate_typing


@dataclass(frozen=True)
class EvalResult:
    loss: float
    perplexity: float
    top1_accuracy: float
    top5_accuracy: float
    tokens: int

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def bits_per_token(self) -> float:
        """Bits per character, for a character-level model."""
        return self.loss / math.log(2)


@torch.inference_mode()
def evaluate(model: nn.Module, stream: Tensor, device: torch.device) -> EvalResult:
    """Score ``stream`` (1-D ids) with the state carried across windows, as in training."""
    was_training = model.training
    model.eval()
    rows = batchify(stream, EVAL_BATCH_SIZE).to(device)
    state = model.zero_state(EVAL_BATCH_SIZE)
    total_loss, top1, top5, count = 0.0, 0, 0, 0
    for inputs, targets in bptt_windows(rows, EVAL_BPTT):
        logits, state = model(inputs, state)  # (B, T, V)
        flat_logits = logits.reshape(-1, logits.size(-1)).float()  # the loss in float32 whatever the model ran in
        flat_targets = targets.reshape(-1)
        total_loss += nn.functional.cross_entropy(flat_logits, flat_targets, reduction="sum").item()
        best5 = flat_logits.topk(5, dim=-1).indices  # (N, 5)
        hits = best5 == flat_targets.unsqueeze(1)
        top1 += int(hits[:, 0].sum())
        top5 += int(hits.any(dim=1).sum())
        count += flat_targets.numel()
    model.train(was_training)
    loss = total_loss / count
    return EvalResult(loss, math.exp(loss), top1 / count, top5 / count, count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("tag", help="model tag in the BentoML store, e.g. nextword:latest")
    parser.add_argument("--corpus", default="auto", help="corpus directory, text file, or auto (the default corpus)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--precision", default="auto", choices=PRECISION_CHOICES, help="as NEXTWORD_PRECISION")
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
        bundle = load_bundle(args.tag, device, pick_dtype(args.precision, device))
        corpus = load_corpus(named_corpus(args.corpus))
    except (CorpusError, LookupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stream = encode_stream(corpus.test, bundle.tokenizer, bundle.vocab)
    result = evaluate(bundle.model, stream, device)
    print(format_result(f"{bundle.tag} ({precision_name(bundle.dtype)})", result, bundle.tokenizer.characters))
    if not bundle.tokenizer.characters:  # keystrokes are counted over a word vocabulary
        print(format_typing(simulate_typing(bundle.model, stream, bundle.vocab, device)))
        texts = encode_texts(split_texts(corpus.test, bundle.tokenizer, corpus.texts), bundle.vocab)
        print(format_fresh(evaluate_fresh_texts(bundle.model, texts, bundle.vocab, device)))
    return 0


def format_result(name: str, result: EvalResult, characters: bool = False) -> str:
    if characters:
        return (
            f"{name}: test bits per character {result.bits_per_token:.3f} (perplexity {result.perplexity:.2f}), "
            f"top-1 accuracy {result.top1_accuracy:.1%}, top-5 accuracy {result.top5_accuracy:.1%} "
            f"over {result.tokens:,} characters"
        )
    return (
        f"{name}: test perplexity {result.perplexity:.1f}, top-1 accuracy {result.top1_accuracy:.1%}, "
        f"top-5 accuracy {result.top5_accuracy:.1%} over {result.tokens:,} tokens"
    )


if __name__ == "__main__":
    sys.exit(main())
