"""Peer servers for ``bench.peers_run``: the same ``Predictor`` behind other serving stacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def run_merged(requests: list[list[In]], run: Callable[[list[In]], list[Out]]) -> list[list[Out]]:
    """Run the inputs of a batch of requests as one model batch; each request's answers, in order."""
    outputs = run([item for inputs in requests for item in inputs])
    answers, start = [], 0
    for inputs in requests:
        answers.append(outputs[start : start + len(inputs)])
        start += len(inputs)
    return answers
