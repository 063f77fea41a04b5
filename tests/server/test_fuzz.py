"""Schema fuzzing: schemathesis generates requests from the published /docs.json and checks
every answer against it (no 5xx, documented statuses, content types, headers and bodies)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from bench.launcher import Server

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 40  # a few seconds per operation against the tiny model


@pytest.fixture(scope="module")
def operations(server: Server) -> dict:
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[operation.path] = operation
    return found


@pytest.mark.parametrize("path", ["/predict_next", "/generate", "/generate_stream"])
def test_the_api_keeps_its_published_contract(operations: dict, path: str) -> None:
    @given(case=operations[path].as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # the same examples every run
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def keeps_contract(case) -> None:
        case.call_and_validate()

    keeps_contract()
