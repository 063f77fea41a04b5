"""Schema fuzzing: schemathesis generates requests from the published /docs.json and checks
every answer against it (no 5xx, documented statuses, content types, headers and bodies), and
its own command line runs every check it has, undeclared methods (405 with ``Allow``) included.

``make test`` runs the same examples every time, so CI is stable. ``make fuzz``
explores new ones: it sets ``NEXTWORD_FUZZ_SEED`` to a fresh seed (printed, and
named in any failure, so that the case can be replayed) and
``NEXTWORD_FUZZ_EXAMPLES`` to more examples per route.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings

from bench.launcher import Server

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = int(os.environ.get("NEXTWORD_FUZZ_EXAMPLES", "40"))  # 40: seconds per route, tiny model
FUZZ_SEED = os.environ.get("NEXTWORD_FUZZ_SEED")  # unset: the fixed examples


@pytest.fixture(scope="module")
def operations(server: Server) -> dict:
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[operation.path] = operation
    return found


FUZZED = ["/predict_next", "/generate", "/generate_stream", "/v1/completions", "/v1/models", "/v1/models/{model}"]
FUZZED += ["/tokenize", "/detokenize", "/tokenizer_info"]


@pytest.mark.parametrize("path", FUZZED)
def test_the_api_keeps_its_published_contract(operations: dict, path: str) -> None:
    @given(case=operations[path].as_strategy().filter(within_cross_field_limits))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=FUZZ_SEED is None,  # the same examples every run, unless exploring
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def keeps_contract(case) -> None:
        case.call_and_validate()

    if FUZZ_SEED is None:
        keeps_contract()
        return
    try:
        seed(int(FUZZ_SEED))(keeps_contract)()
    except Exception as error:
        raise AssertionError(f"{path} broke its contract; replay with NEXTWORD_FUZZ_SEED={FUZZ_SEED}") from error


def within_cross_field_limits(case) -> bool:
    """A limit OpenAPI 3.0 cannot state, documented on the field instead: /v1/completions' prompts
    times ``n`` is at most NEXTWORD_MAX_INPUTS (the test server's default, 64)."""
    body = case.body if isinstance(case.body, dict) else {}
    if case.path != "/v1/completions" or not isinstance(body.get("n"), int):
        return True
    prompt = body.get("prompt")
    prompts = len(prompt) if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)) else 1
    return prompts * body["n"] <= 64


CLI_EXAMPLES_PER_OPERATION = int(os.environ.get("NEXTWORD_FUZZ_EXAMPLES", "20"))


def test_schemathesis_with_every_check_finds_nothing(server: Server, tmp_path: Path) -> None:
    """``schemathesis run --checks all`` over every phase (examples, coverage, fuzzing, stateful):
    the coverage phase sends each route the methods it does not declare, and each must answer 405
    with an ``Allow`` header; no answer may be a 5xx. Its report goes to a temporary folder."""
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/docs.json", "--checks", "all"]
    command += ["--max-examples", str(CLI_EXAMPLES_PER_OPERATION), "--seed", FUZZ_SEED or "1", "--no-color"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"schemathesis found failures (seed {FUZZ_SEED or 1}):\n{run.stdout[-6000:]}"
    assert "failed" not in run.stdout.split("SUMMARY")[-1]
