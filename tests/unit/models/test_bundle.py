"""The store entry alone reproduces the trained model's predictions."""

import subprocess
import sys
from dataclasses import replace

import bentoml
import pytest
import torch
from torch import Tensor, nn

from bench.launcher import REPO
from models.bundle import SERVING_METHODS, load_bundle, prepare_for_inference
from models.rnn import ModelConfig, RecurrentLM
from models.scoring import compile_scorer
from models.tokenizer import Tokenizer
from tests.conftest import TINY_TRAIN
from training.corpus import load_corpus
from training.data import encode_stream
from training.evaluate import evaluate
from training.export import export, script_model
from training.train import train


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
    typing = meta["test_typing"]
    assert 0 < typing["keystroke_savings"] < 1 and typing["words"] > 0
    for hits in ("next_word", "after_1_letter", "after_2_letters"):
        assert 0 < typing[f"{hits}_top1"] <= typing[f"{hits}_top3"] < 1
    fresh = meta["test_fresh_texts"]  # the test split's sentences, each typed from an empty state
    assert fresh["texts"] > 0 and 0 < fresh["keystroke_savings"] < 1 and 0 <= fresh["echo_rate"] < 1
    assert 0 <= fresh["chains"]["back_to_back"] <= fresh["chains"]["cycles"] <= 1 and fresh["chains"]["examples"]
    recency = meta["recency"]  # the recency cache's tuning, and the model's score without it
    config = meta["model_config"]
    for term in ("decay", "weight", "skip", "fill", "repeat"):
        assert config[f"recency_{term}"] == recency[term], term
    assert meta["test_perplexity"] <= recency["test_perplexity_without"]


def test_the_entry_alone_reproduces_the_trained_model(tiny_corpus_file) -> None:
    """Loaded from the store in float32, the model gives the trained eager model's log-probabilities,
    with the same vocabulary and tokenizer, on a text of the corpus."""
    config = replace(TINY_TRAIN, corpus=str(tiny_corpus_file), model_name="nextword-round-trip", max_vocab=500)
    corpus = load_corpus(config.corpus)
    outcome = train(config, corpus)
    bundle = load_bundle(export(config, corpus, outcome), torch.device("cpu"), torch.float32)
    assert bundle.vocab.words == outcome.vocab.words and bundle.tokenizer.settings == outcome.tokenizer
    text = " ".join(corpus.test[:3])
    ids = torch.tensor([outcome.vocab.encode(Tokenizer(outcome.tokenizer).tokenize(text))])
    assert torch.equal(ids, torch.tensor([bundle.vocab.encode(bundle.tokenizer.tokenize(text))]))
    outcome.model.eval()
    with torch.no_grad():
        trained, _ = outcome.model(ids, outcome.model.zero_state(1))
        loaded, _ = bundle.model(ids, bundle.model.zero_state(1))
    assert loaded.shape == (1, ids.size(1), len(outcome.vocab))
    torch.testing.assert_close(loaded, trained, rtol=1e-5, atol=1e-5)


def test_bfloat16_keeps_the_quality(tiny_model_tag: str, tiny_corpus_file) -> None:
    cpu = torch.device("cpu")
    full = load_bundle(tiny_model_tag, cpu, torch.float32)
    half = load_bundle(tiny_model_tag, cpu, torch.bfloat16)
    assert full.dtype == torch.float32 and half.dtype == torch.bfloat16
    assert half.model.zero_state(1).dtype == torch.bfloat16
    stream = encode_stream(load_corpus(str(tiny_corpus_file)).test, full.tokenizer, full.vocab)
    full_result, half_result = evaluate(full.model, stream, cpu), evaluate(half.model, stream, cpu)
    assert half_result.perplexity == pytest.approx(full_result.perplexity, rel=0.02)
    assert half_result.top1_accuracy == pytest.approx(full_result.top1_accuracy, abs=0.01)


def test_an_entry_frozen_before_the_cast_stays_float32() -> None:
    """Store entries written by earlier versions hold a frozen module: served as they are."""
    scripted = script_model(RecurrentLM(ModelConfig(vocab_size=30, embedding_dim=8, hidden_size=8)))
    frozen = torch.jit.freeze(scripted, preserved_attrs=SERVING_METHODS)
    model, dtype = prepare_for_inference(frozen, torch.bfloat16)
    assert dtype == torch.float32 and model.zero_state(1).dtype == torch.float32


class DecodeWithoutState(nn.Module):
    """The model contract as entries saved before the recency cache have it: ``decode(hidden)``."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(30, 8)
        self.decoder = nn.Linear(8, 30)

    def forward(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        hidden, state = self.encode(tokens, state)
        return self.decode(hidden), state

    @torch.jit.export
    def encode(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.embedding(tokens), state

    @torch.jit.export
    def decode(self, hidden: Tensor) -> Tensor:
        return self.decoder(hidden)

    @torch.jit.export
    def zero_state(self, batch_size: int) -> Tensor:
        return torch.zeros(1, 1, batch_size, 8)


def test_an_entry_whose_decode_takes_no_state_is_served() -> None:
    old = torch.jit.script(DecodeWithoutState())
    model, _ = prepare_for_inference(old, torch.float32)
    tokens = torch.tensor([[3, 4]])
    hidden, state = model.encode(tokens, model.zero_state(1))
    torch.testing.assert_close(model.decode(hidden[:, -1], state), old(tokens, old.zero_state(1))[0][:, -1])
    compile_scorer(model)  # the serving path scripts against decode(hidden, state)


@pytest.mark.parametrize(("precision", "tolerance"), [("float32", 1e-3), ("bfloat16", 0.02)])
def test_evaluate_cli_against_store(tiny_model_tag: str, tiny_corpus_file, precision: str, tolerance: float) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.evaluate",
            tiny_model_tag,
            "--corpus",
            str(tiny_corpus_file),
            "--precision",
            precision,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"({precision})" in result.stdout
    ppl = float(result.stdout.split("test perplexity ")[1].split(",")[0])
    meta = bentoml.models.get(tiny_model_tag).info.metadata
    assert ppl == pytest.approx(meta["test_perplexity"], rel=tolerance)
    savings = float(result.stdout.split("keystroke savings ")[1].split("%")[0]) / 100
    assert savings == pytest.approx(meta["test_typing"]["keystroke_savings"], abs=0.01 + tolerance)


def test_evaluate_cli_unknown_tag(tiny_corpus_file) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.evaluate", "nope:latest", "--corpus", str(tiny_corpus_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "not in the BentoML store" in result.stderr
