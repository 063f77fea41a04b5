"""`bentoml build` makes a Bento with the service code and the exact model pinned."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from bench.launcher import REPO

pytestmark = pytest.mark.slow


def bentoml_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bentoml", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_build_pins_model_and_exports_it(tiny_model_tag: str, tmp_path: Path) -> None:
    env = {"NEXTWORD_MODEL": tiny_model_tag}
    built = bentoml_cli("build", "--output", "tag", env=env)
    assert built.returncode == 0, built.stderr
    bento_tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert bento_tag.startswith("nextword:")

    exported = tmp_path / "nextword.bento"
    result = bentoml_cli("export", bento_tag, str(exported), env=env)
    assert result.returncode == 0, result.stderr
    with tarfile.open(exported) as archive:
        names = set(archive.getnames())
        manifest = yaml.safe_load(archive.extractfile("./bento.yaml"))
    name, version = tiny_model_tag.split(":")
    assert f"./models/{name}/{version}/model.ts" in names
    assert {"./src/service/service.py", "./src/models/rnn.py", "./env/docker/Dockerfile"} <= names
    assert not any(n.startswith(("./src/tests", "./src/.venv", "./src/training")) for n in names)
    assert manifest["services"][0]["models"][0]["tag"] == tiny_model_tag
    requirements = {line.strip() for line in archive_text(exported, "./env/python/requirements.txt").splitlines()}
    assert "torch==2.13.0" in requirements


def archive_text(path: Path, member: str) -> str:
    with tarfile.open(path) as archive:
        return archive.extractfile(member).read().decode()
