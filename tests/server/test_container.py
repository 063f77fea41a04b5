"""The container image as users run it: ``make containerize``'s script builds it from the tiny
model, and ``docker run`` serves it on the port it is given, as a non-root user, with the model
inside, a health check on /readyz, ``NEXTWORD_*`` variables through ``-e``, and a ``docker stop``
that lets an in-flight stream finish before the container exits 0.

Skipped, saying so, where no Docker engine answers, except where ``NEXTWORD_REQUIRE_DOCKER=1``
(CI): there it fails. Docker runs with no bridge network here, so containers use the host's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.launcher import REPO, free_port, wait_until_ready

pytestmark = pytest.mark.slow
CONTAINERIZE = REPO / "deploy" / "container" / "containerize.sh"
STOP_GRACE_S = 60


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def docker_answers() -> bool:
    return shutil.which("docker") is not None and docker("info", timeout=30).returncode == 0


@pytest.fixture(scope="module")
def image(tiny_model_tag: str) -> Iterator[str]:
    """The image of the tiny model, built as ``make containerize`` builds it; removed afterwards."""
    if not docker_answers():
        if os.environ.get("NEXTWORD_REQUIRE_DOCKER") == "1":
            pytest.fail("NEXTWORD_REQUIRE_DOCKER=1 but no Docker engine answers 'docker info'")
        pytest.skip("no Docker engine answers here (.ci/run starts one; see docs/operations.md)")
    name = f"nextword-test-{uuid.uuid4().hex[:8]}"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "IMAGE": name, "BENTOML": str(bin_dir / "bentoml"), "PYTHON": sys.executable}
    env["NEXTWORD_MODEL"] = "nextword:latest"  # as make exports it: the image must serve the model it is given
    env["PIP"] = str(bin_dir / "pip")
    started = time.monotonic()
    built = subprocess.run(
        [str(CONTAINERIZE), tiny_model_tag], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, built.stderr[-4000:]
    tag = built.stdout.strip().splitlines()[-1]
    print(f"image {tag} built in {time.monotonic() - started:.0f} s")  # the docs' build time
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, f"{name}:latest")


class Container:
    """``docker run -d`` of the image on a free host port, removed when done."""

    def __init__(self, image: str, *env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = [arg for value in (f"PORT={self.port}", *env) for arg in ("-e", value)]
        run = docker("run", "-d", "--network", "host", "--health-interval", "1s", *options, image)
        assert run.returncode == 0, run.stderr
        self.id = run.stdout.strip()

    def state(self) -> dict:
        return json.loads(docker("inspect", self.id).stdout)[0]["State"]

    def logs(self) -> str:
        logs = docker("logs", self.id)
        return logs.stdout + logs.stderr

    def remove(self) -> None:
        docker("rm", "-f", self.id)


@pytest.fixture
def container(image: str) -> Iterator[Container]:
    running = Container(image)
    try:
        yield running
    finally:
        running.remove()


def test_the_image_serves_on_the_port_it_is_given_as_a_user_not_root(
    image: str, container: Container, tiny_model_tag: str
) -> None:
    started = time.monotonic()
    process = ContainerProcess(container)
    wait_until_ready(container.url, process, timeout=180, output=container.logs)
    print(f"container start to ready: {time.monotonic() - started:.1f} s")
    with httpx.Client(base_url=container.url, timeout=30) as client:
        answer = client.post("/predict_next", json={"inputs": [{"text": "the game was", "top_k": 3}]})
        assert answer.status_code == 200 and len(answer.json()[0]["predictions"]) == 3
        (model,) = client.get("/v1/models").json()["data"]
        assert model["id"] == tiny_model_tag  # the model inside the image, with no NEXTWORD_MODEL given
        completion = client.post("/v1/completions", json={"model": model["id"], "prompt": "the", "max_tokens": 2})
        assert completion.status_code == 200 and completion.json()["choices"][0]["text"] is not None
    assert docker("exec", container.id, "id", "-u").stdout.strip() != "0"
    deadline = time.monotonic() + 60
    while container.state()["Health"]["Status"] != "healthy":
        assert time.monotonic() < deadline, f"never healthy: {container.state()['Health']}"
        time.sleep(0.5)


def test_docker_stop_lets_a_stream_finish_whole_and_exits_0(image: str) -> None:
    container = Container(image, "NEXTWORD_MAX_NEW_TOKENS=100000")
    try:
        wait_until_ready(container.url, ContainerProcess(container), timeout=180, output=container.logs)
        tokens = 20000  # long enough to be in flight when the stop comes, on any machine
        events: list[dict] = []
        body = {"inputs": [{"prompt": "the game", "max_new_tokens": tokens, "seed": 1}]}
        first_event = threading.Event()

        def read_stream() -> None:
            with httpx.stream("POST", f"{container.url}/generate_stream", json=body, timeout=STOP_GRACE_S) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line.removeprefix("data: ")))
                        first_event.set()

        reader = threading.Thread(target=read_stream)
        reader.start()
        assert first_event.wait(60), "the stream never started"
        stop = docker("stop", "-t", str(STOP_GRACE_S), container.id, timeout=STOP_GRACE_S + 30)
        reader.join(STOP_GRACE_S)
        assert stop.returncode == 0, stop.stderr
        assert events[-1].get("finish_reason") == "length", events[-1]
        assert events[-1]["generated_tokens"] == tokens and len(events) == tokens + 1
        state = container.state()
        assert state["ExitCode"] == 0 and not state["OOMKilled"], container.logs()[-3000:]
    finally:
        container.remove()


def test_a_bad_variable_through_e_exits_2_with_one_line(image: str) -> None:
    run = docker("run", "--rm", "--network", "host", "-e", "NEXTWORD_WORKERS=zero", image, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("nextword:")]
    assert lines == ["nextword: bad configuration: NEXTWORD_WORKERS must be an integer, got 'zero'"], run.stderr


class ContainerProcess:
    """What ``wait_until_ready`` asks of a process, for a container: whether it has exited."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.returncode: int | None = None

    def poll(self) -> int | None:
        state = self.container.state()
        if state["Status"] in ("exited", "dead"):
            self.returncode = state["ExitCode"]
        return self.returncode
