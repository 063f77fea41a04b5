"""The store entry alone reproduces the trained model's predictions."""

import subprocess
import sys

import bentoml
import torch

from models.bundle import load_bundle
from service.launcher import REPO


def test_store_round_trip(tiny_model_tag: str) -> None:
    stored = bentoml.models.get(tiny_model_tag)
    meta = stored.info.metadata
    assert stored.info.labels["architecture"] == "lstm"
    for key in (
        "parameters",
        "vocab_size",
        "corpus_sha256",
        "train_tokens",
        "test_perplexity",
        "test_top1_accuracy",
        "test_top5_accuracy",
        "train_seconds",
        "torch_version",
    ):
        assert key in meta, key
    # Learned something: far better than a uniform guess over the vocabulary.
    assert 1 < meta["test_perplexity"] < 0.2 * meta["vocab_size"]

    bundle = load_bundle(tiny_model_tag, torch.device("cpu"))
    again = load_bundle(tiny_model_tag, torch.device("cpu"))
    ids = torch.tensor([bundle.vocab.encode(bundle.tokenizer.tokenize("the first of the"))])
    logits, state = bundle.model(ids, bundle.model.zero_state(1))
    logits_again, _ = again.model(ids, again.model.zero_state(1))
    torch.testing.assert_close(logits, logits_again)
    assert logits.shape == (1, ids.size(1), len(bundle.vocab)) == (1, ids.size(1), meta["vocab_size"])


def test_evaluate_cli_against_store(tiny_model_tag: str, tiny_corpus_file) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.evaluate", tiny_model_tag, "--corpus", str(tiny_corpus_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ppl = float(result.stdout.split("test perplexity ")[1].split(",")[0])
    meta = bentoml.models.get(tiny_model_tag).info.metadata
    assert abs(ppl - meta["test_perplexity"]) < 0.1


def test_evaluate_cli_unknown_tag(tiny_corpus_file) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.evaluate", "nope:latest", "--corpus", str(tiny_corpus_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "not in the BentoML store" in result.stderr
