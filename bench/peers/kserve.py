"""Triton's inference protocol (KServe v2): the body the benchmark sends to ``bench.peers.triton``."""

from __future__ import annotations

MODEL_PATH = "/v2/models/nextword/infer"
GENERATE_PATH = "/v2/models/nextword_generate/infer"


def infer_body(texts: list[str], top_k: int = 5, complete: bool = False) -> dict:
    """The inputs of the service's /predict_next body as Triton's tensors, each of shape [inputs, 1]."""
    n = len(texts)
    return {
        "inputs": [
            {"name": "text", "shape": [n, 1], "datatype": "BYTES", "data": texts},
            {"name": "top_k", "shape": [n, 1], "datatype": "INT32", "data": [top_k] * n},
            {"name": "complete", "shape": [n, 1], "datatype": "BOOL", "data": [complete] * n},
        ]
    }


def generate_body(prompts: list[str], max_new_tokens: int, temperature: float) -> dict:
    """/generate's prompts as Triton's tensors."""
    n = len(prompts)
    return {
        "inputs": [
            {"name": "prompt", "shape": [n, 1], "datatype": "BYTES", "data": prompts},
            {"name": "max_new_tokens", "shape": [n, 1], "datatype": "INT32", "data": [max_new_tokens] * n},
            {"name": "temperature", "shape": [n, 1], "datatype": "FP32", "data": [temperature] * n},
        ]
    }
