"""Reading py-spy's samples into the model's share of each process."""

from __future__ import annotations

import pytest

from bench.launcher import REPO
from bench.serving_cpu import model_fractions

SERVER = 'process 10:"python -m bench.peers.triton --port 1"'
STUB = 'process 12:"triton_python_backend_stub"'
LOOP = "run (/x/site-packages/uvicorn/server.py:86)"
PREDICT = f"NextWordJob.predict_next ({REPO}/service/engine/next_words.py:55)"
FORWARD = "forward (/x/site-packages/torch/nn/modules/module.py:1)"
WAIT = "Condition.wait (/usr/lib/python3.11/threading.py:320)"


def test_each_process_gets_the_share_of_its_busy_samples_inside_the_predictor() -> None:
    raw = "\n".join(
        [
            f"{SERVER};thread (10): MainThread;{LOOP} 30",
            f"{SERVER};thread (11): model;{LOOP};{PREDICT} 50",
            f"{SERVER};thread (11): model;{FORWARD} 20",  # torch alone counts as the model's too
            f"{SERVER};thread (13): waiter;{LOOP};{WAIT} 900",  # blocked: not busy
            f"{SERVER};{STUB};thread (12): MainThread;{LOOP} 40",  # the innermost process is the one sampled
        ]
    )
    assert model_fractions(raw) == {10: pytest.approx(0.7), 12: 0.0}


def test_a_frame_outside_this_repository_named_models_is_not_the_model() -> None:
    raw = f"{SERVER};thread (10): MainThread;get (/x/site-packages/bentoml/models/__init__.py:5) 10"
    assert model_fractions(raw) == {10: 0.0}
