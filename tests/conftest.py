"""Shared fixtures: a real tiny model trained on a slice of WikiText-2 into a
temporary BentoML store, and the real server started on a free loopback port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# BentoML reads BENTOML_HOME when it is imported: point it at a fresh store first.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="nextword-test-bentoml-")

import httpx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("NEXTWORD_TEST_CORPUS", REPO.parent / "shared" / "data" / "wikitext-2"))
TINY_LINES = 800


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not (CORPUS / "train.txt").is_file():
        pytest.fail(f"test corpus not found at {CORPUS}; set NEXTWORD_TEST_CORPUS")
    return CORPUS


@pytest.fixture(scope="session")
def tiny_corpus_file(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first lines of the shared train split as one file (split 80/10/10 by the loader)."""
    lines = (corpus_dir / "train.txt").read_text(encoding="utf-8").splitlines()[:TINY_LINES]
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model_tag(tiny_corpus_file: Path) -> str:
    """Train and export a tiny LSTM into the test store; returns its tag."""
    from training.corpus import load_corpus
    from training.train import TrainConfig, export, train

    config = TrainConfig(
        corpus=str(tiny_corpus_file),
        model_name="nextword-test",
        hidden_size=32,
        num_layers=1,
        dropout=0.0,
        max_vocab=1500,
        batch_size=16,
        bptt=20,
        lr=1e-2,
        epochs=1,
        max_minutes=2,
        device="cpu",
    )
    corpus = load_corpus(config.corpus)
    return export(config, corpus, train(config, corpus))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ``bentoml serve`` subprocess on a loopback port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="nextword-server-", suffix=".log", delete=False)  # noqa: SIM115 (lives as long as the server)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "service.service:NextWord",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server(tiny_model_tag: str) -> Iterator[Server]:
    srv = Server({"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_MAX_BATCH_SIZE": "64"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http
