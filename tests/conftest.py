"""Shared fixtures: a real tiny model trained on a slice of the default corpus (WikiText-2 and
the chat corpus, ``make serve``'s) into a temporary BentoML store, and the real server started
on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

# BentoML reads BENTOML_HOME when it is imported: point it at a fresh store first.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="nextword-test-bentoml-")

import httpx  # noqa: E402

from bench.launcher import Server  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.corpus import CorpusError, load_corpus  # noqa: E402
from training.download import named_corpus, wikitext2_corpus  # noqa: E402
from training.export import export  # noqa: E402
from training.train import train  # noqa: E402

# A model small enough to train in seconds on TINY_LINES lines, yet one that learns.
TINY_TRAIN = TrainConfig(
    hidden_size=32,
    num_layers=1,
    dropout=0.0,
    weight_drop=0.0,
    max_vocab=1500,
    batch_size=16,
    bptt=20,
    optimizer="adam",
    lr=1e-2,
    lr_schedule="plateau",  # reproducible: the cosine schedule follows the clock
    average_weights=False,  # the tests check plain training; tests/unit/training/test_train.py checks averaging
    epochs=1,
    max_minutes=2,
    device="cpu",
)
TINY_LINES = 800  # from the train split's start: WikiText-2's first paragraphs, in the mixed default
TINY_TAIL_LINES = 800  # from its end: the chat corpus's last conversations


def train_tiny(text: str, folder: Path, model_name: str, **options: object) -> str:
    """Write ``text`` as a one-file corpus in ``folder``, train a TINY_TRAIN model on it (with
    ``options``) into the test store, and return its tag."""
    path = folder / f"{model_name}.txt"
    path.write_text(text, encoding="utf-8")
    config = replace(TINY_TRAIN, corpus=str(path), model_name=model_name, **options)
    corpus = load_corpus(config.corpus)
    return export(config, corpus, train(config, corpus))


@contextlib.contextmanager
def serving(tag: str) -> Iterator[httpx.Client]:
    """The real server on ``tag``, and a client of it."""
    env = {"NEXTWORD_MODEL": tag, "NEXTWORD_DEVICE": "cpu"}
    with Server(env=env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """``NEXTWORD_TEST_CORPUS``, else the corpus ``make serve`` trains on (``named_corpus("auto")``)."""
    if "NEXTWORD_TEST_CORPUS" in os.environ:
        return corpus_folder(Path(os.environ["NEXTWORD_TEST_CORPUS"]))
    return corpus_folder(lambda: named_corpus("auto"))


@pytest.fixture(scope="session")
def wikitext_dir() -> Path:
    """WikiText-2 itself: ../shared's copy or the cached download."""
    return corpus_folder(wikitext2_corpus)


def corpus_folder(find: Callable[[], Path] | Path) -> Path:
    try:
        corpus = find() if callable(find) else find
    except CorpusError as error:
        pytest.fail(f"no test corpus: {error} (for the tests: NEXTWORD_TEST_CORPUS=<folder>)")
    if not (corpus / "train.txt").is_file():
        pytest.fail(f"test corpus not found at {corpus}; set NEXTWORD_TEST_CORPUS")
    return corpus


@pytest.fixture(scope="session")
def tiny_corpus_file(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The start and the end of the train split as one file (split 80/10/10 by the loader)."""
    lines = (corpus_dir / "train.txt").read_text(encoding="utf-8").splitlines()
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("\n".join(lines[:TINY_LINES] + lines[-TINY_TAIL_LINES:]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model_tag(tiny_corpus_file: Path) -> str:
    """Train and export a tiny LSTM into the test store; returns its tag."""
    config = replace(TINY_TRAIN, corpus=str(tiny_corpus_file), model_name="nextword-test")
    corpus = load_corpus(config.corpus)
    return export(config, corpus, train(config, corpus))


@pytest.fixture(scope="session")
def server(tiny_model_tag: str) -> Iterator[Server]:
    srv = Server(env={"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_MAX_BATCH_SIZE": "64"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http
