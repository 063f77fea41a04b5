"""The Bento as users ship it: built, exported, imported into a fresh store and served from
outside the repository, with the exact model pinned and every route answering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
import yaml

from bench.launcher import REPO, Server

pytestmark = pytest.mark.slow

# The checkout is not importable from outside it: the Bento must carry every module it runs, and
# serve its own model (make exports NEXTWORD_MODEL to the tests: it must not reach these commands).
OUTSIDE = ("PYTHONPATH", "NEXTWORD_MODEL")
OUTSIDE_ENV = {name: value for name, value in os.environ.items() if name not in OUTSIDE}


def bentoml_cli(*args: str, home: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bentoml", *args],
        cwd=cwd,
        env={**OUTSIDE_ENV, "BENTOML_HOME": home},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def exported_bento(tiny_model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The Bento built as ``make build`` builds it (the model named by a Bento argument, no
    NEXTWORD_MODEL), exported to a file; its tag and the file."""
    home = os.environ["BENTOML_HOME"]
    built = bentoml_cli("build", "--arg", f"model={tiny_model_tag}", "--output", "tag", home=home)
    assert built.returncode == 0, built.stderr
    bento_tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert bento_tag.startswith("nextword:")
    exported = tmp_path_factory.mktemp("bento") / "nextword.bento"
    result = bentoml_cli("export", bento_tag, str(exported), home=home)
    assert result.returncode == 0, result.stderr
    return bento_tag, exported


def test_build_pins_model_and_exports_it(tiny_model_tag: str, exported_bento: tuple[str, Path]) -> None:
    _, exported = exported_bento
    with tarfile.open(exported) as archive:
        names = set(archive.getnames())
        manifest = yaml.safe_load(archive.extractfile("./bento.yaml"))
    name, version = tiny_model_tag.split(":")
    assert f"./models/{name}/{version}/model.ts" in names
    assert {"./src/service/service.py", "./src/models/rnn.py", "./env/docker/Dockerfile"} <= names
    assert not any(n.startswith(("./src/tests", "./src/.venv", "./src/training", "./src/bench")) for n in names)
    assert manifest["services"][0]["models"][0]["tag"] == tiny_model_tag
    assert manifest["args"] == {"model": tiny_model_tag}
    requirements = {line.strip() for line in archive_text(exported, "./env/python/requirements.txt").splitlines()}
    assert "torch==2.13.0" in requirements


def test_the_bento_holds_every_module_of_the_service(exported_bento: tuple[str, Path]) -> None:
    """Every Python file and page file under models/ and service/ is in the Bento, at any depth."""
    _, exported = exported_bento
    with tarfile.open(exported) as archive:
        names = set(archive.getnames())
    shipped = [
        path.relative_to(REPO).as_posix()
        for folder in ("models", "service")
        for path in (REPO / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    missing = [path for path in shipped if f"./src/{path}" not in names]
    assert not missing, f"left out of the Bento: {missing}"


def test_the_imported_bento_serves_every_route_from_outside_the_repository(
    exported_bento: tuple[str, Path], tmp_path: Path
) -> None:
    """``bentoml import`` into a fresh store, then ``bentoml serve nextword:latest`` from another
    folder, with neither the checkout on the path nor NEXTWORD_MODEL: the Bento's own model."""
    _, exported = exported_bento
    fresh_store = tmp_path / "store"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    imported = bentoml_cli("import", str(exported), home=str(fresh_store), cwd=elsewhere)
    assert imported.returncode == 0, imported.stderr
    command = [sys.executable, "-m", "bentoml", "serve", "nextword:latest", "--host", "127.0.0.1", "--port", "{port}"]
    env = {"BENTOML_HOME": str(fresh_store), "NEXTWORD_DEVICE": "cpu"}
    server = Server(command=command, env=env, cwd=elsewhere, unset=OUTSIDE)
    with server, httpx.Client(base_url=server.url) as client:
        check_every_route(client)


def check_every_route(client: httpx.Client) -> None:
    """/readyz, /predict_next, /generate, /generate_stream, /v1/completions and /demo/ answer 200."""
    assert client.get("/readyz").status_code == 200
    answer = client.post("/predict_next", json={"inputs": [{"text": "the game was", "top_k": 3}]})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()[0]["predictions"]) == 3
    generated = client.post("/generate", json={"inputs": [{"prompt": "the game", "max_new_tokens": 4, "seed": 1}]})
    assert generated.status_code == 200, generated.text
    assert generated.json()[0]["finish_reason"] in ("length", "stop")
    stream = client.post("/generate_stream", json={"inputs": [{"prompt": "the game", "max_new_tokens": 3, "seed": 1}]})
    assert stream.status_code == 200, stream.text
    events = [json.loads(line.removeprefix("data: ")) for line in stream.text.splitlines() if line.startswith("data:")]
    assert events[-1]["finish_reason"] in ("length", "stop")
    (model,) = client.get("/v1/models").json()["data"]
    completion = client.post("/v1/completions", json={"model": model["id"], "prompt": "the game", "max_tokens": 3})
    assert completion.status_code == 200, completion.text
    assert completion.json()["object"] == "text_completion"
    page = client.get("/demo/")
    assert page.status_code == 200 and "<html" in page.text.lower()


def archive_text(path: Path, member: str) -> str:
    with tarfile.open(path) as archive:
        return archive.extractfile(member).read().decode()
