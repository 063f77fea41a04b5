"""Start-up failures, as ``make serve`` runs the server (``python -m service.serve``):
one clear line and a non-zero exit, never a worker restarted forever, and no harm to a server already running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.launcher import REPO, free_port, wait_until_ready
from service.settings import VARIABLES

pytestmark = pytest.mark.slow


def serve(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "service.serve", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=REPO,
        env={**os.environ, "NEXTWORD_DEVICE": "cpu", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that a stuck start can be killed with everything it started
    )


def failed_start(env: dict[str, str]) -> tuple[int, str]:
    """Exit status and output of a server start expected to fail; the guard fails one that never ends."""
    process = serve(env)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # as a person would stop it: the server stops its workers
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output = "(no output: it did not stop on SIGTERM either)"
        pytest.fail(f"the server did not stop within 60 s:\n{output[-3000:]}")
    return process.returncode, output


# A bad value for every variable but NEXTWORD_MODEL, any text, whose bad values are the tests below.
BAD_VALUES = {
    "NEXTWORD_DEVICE": "tpu",
    "NEXTWORD_PRECISION": "float16",
    "NEXTWORD_WORKERS": "zero",
    "NEXTWORD_TORCH_THREADS": "-1",
    "NEXTWORD_BATCHING": "sometimes",
    "NEXTWORD_GENERATE_BATCHING": "eager",
    "NEXTWORD_STATE_CACHE_MB": "lots",
    "NEXTWORD_MAX_QUEUED_TOKENS": "-5",
    "NEXTWORD_MAX_BATCH_SIZE": "1",
    "NEXTWORD_MAX_LATENCY_MS": "0",
    "NEXTWORD_MAX_INPUTS": "0",
    "NEXTWORD_MAX_TEXT_CHARS": "0",
    "NEXTWORD_MAX_TEXT_TOKENS": "1.5",
    "NEXTWORD_MAX_NEW_TOKENS": "0",
    "NEXTWORD_MAX_BODY_BYTES": "100",
    "NEXTWORD_TIMEOUT_S": "0",
    "NEXTWORD_MAX_CONCURRENCY": "none",
    "NEXTWORD_ACCESS_LOG": "maybe",
    "NEXTWORD_DIRECT_ROUTE": "sometimes",
    "NEXTWORD_TRACING_SAMPLE_RATE": "2",
    "NEXTWORD_API_KEY": "two words",  # a header cannot carry it unchanged
    "NEXTWORD_API_KEY_FILE": "/nonexistent/key",
    "NEXTWORD_BLOCKLIST": "/nonexistent/blocklist.txt",
}
SECRET = {"NEXTWORD_API_KEY"}  # named, never shown


def test_every_bad_setting_stops_the_server_with_one_line_naming_it(tiny_model_tag: str) -> None:
    assert set(BAD_VALUES) | {"NEXTWORD_MODEL"} == set(VARIABLES)  # every variable is tried
    with ThreadPoolExecutor(4) as pool:  # real starts, side by side: each fails in its first seconds
        starts = dict(
            zip(
                BAD_VALUES,
                pool.map(
                    lambda item: failed_start({"NEXTWORD_MODEL": tiny_model_tag, item[0]: item[1]}), BAD_VALUES.items()
                ),
                strict=True,
            )
        )
    for name, (code, output) in starts.items():
        assert code == 2, (name, output)
        lines = [line for line in output.splitlines() if line.startswith("nextword: bad configuration: ")]
        assert len(lines) == 1 and lines[0].startswith(f"nextword: bad configuration: {name} must "), (name, output)
        if name in SECRET:
            assert BAD_VALUES[name] not in output, (name, output)
        else:
            assert f"got {BAD_VALUES[name]}" in lines[0].replace("'", ""), (name, lines[0])  # and the value
        assert "Traceback" not in output, name


def test_a_corrupt_model_stops_the_server_with_one_line(tiny_model_tag: str, tmp_path: Path) -> None:
    name, version = tiny_model_tag.split(":")
    entry = Path(os.environ["BENTOML_HOME"]) / "models" / name / version
    copy = tmp_path / "models" / name / version
    shutil.copytree(entry, copy)
    (copy.parent / "latest").write_text(version)
    model_file = copy / "model.ts"
    model_file.write_bytes(model_file.read_bytes()[:1000])  # truncated, as by a full disk or a broken copy

    code, output = failed_start({"NEXTWORD_MODEL": tiny_model_tag, "BENTOML_HOME": str(tmp_path)})
    assert code == 3, output
    (line,) = [line for line in output.splitlines() if line.startswith("nextword:")]
    assert tiny_model_tag in line and str(model_file) in line and "truncated or corrupt" in line
    assert "Traceback" not in output


def test_a_model_torch_cannot_load_stops_the_server_with_one_line(tiny_model_tag: str, tmp_path: Path) -> None:
    """A sound zip archive that is no TorchScript module passes the file check; the worker stops the server."""
    name, version = tiny_model_tag.split(":")
    copy = tmp_path / "models" / name / version
    shutil.copytree(Path(os.environ["BENTOML_HOME"]) / "models" / name / version, copy)
    (copy.parent / "latest").write_text(version)
    with zipfile.ZipFile(copy / "model.ts", "w") as archive:
        archive.writestr("not-a-model/data.txt", "hello")

    code, output = failed_start({"NEXTWORD_MODEL": tiny_model_tag, "BENTOML_HOME": str(tmp_path)})
    assert code == 3, output
    lines = [line for line in output.splitlines() if "nextword: cannot load model" in line]
    assert lines and tiny_model_tag in lines[0] and "stopping the server" in lines[0]
    assert "Traceback" not in output


def test_a_model_missing_from_the_store_stops_the_server_with_one_line() -> None:
    code, output = failed_start({"NEXTWORD_MODEL": "nextword-test:nosuchversion"})
    assert code == 3, output
    assert "nextword: model nextword-test:nosuchversion is not in the BentoML store" in output
    assert "Traceback" not in output


def test_a_failed_start_leaves_a_running_servers_metrics(tiny_model_tag: str) -> None:
    """BentoML empties $BENTOML_HOME/prometheus_multiproc_dir as a server starts; servers started
    by service.serve each have their own, so a neighbour's failed start cannot empty /metrics."""
    running = serve({"NEXTWORD_MODEL": tiny_model_tag})
    try:
        url = wait_ready(running)
        httpx.post(f"{url}/predict_next", json={"inputs": [{"text": "the"}]}, timeout=30).raise_for_status()
        assert "nextword_batch_size_count" in httpx.get(f"{url}/metrics").text
        code, output = failed_start({"NEXTWORD_MODEL": "nextword-test:nosuchversion"})
        assert code == 3, output
        metrics = httpx.get(f"{url}/metrics").text
        assert "nextword_batch_size_count" in metrics and "nextword_model_info" in metrics
    finally:
        running.terminate()
        running.communicate(timeout=30)


def wait_ready(process: subprocess.Popen) -> str:
    url = f"http://127.0.0.1:{process.args[process.args.index('--port') + 1]}"
    wait_until_ready(url, process, timeout=120)
    return url
