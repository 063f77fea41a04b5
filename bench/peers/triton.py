"""The same model behind NVIDIA Triton, through PyTriton: Triton's own server and its dynamic batcher.

PyTriton runs the real ``tritonserver`` binary and binds a Python callable
to it as a model. Clients speak Triton's own protocol (KServe v2): ``POST
/v2/models/nextword/infer`` with the inputs as tensors, ``text`` (BYTES),
``top_k`` (INT32) and ``complete`` (BOOL), each of shape [inputs, 1]; the
answer is a tensor ``answer`` of one JSON document per input, the service's
own answer for it. A second model, ``nextword_generate``, continues
prompts (``prompt`` BYTES, ``max_new_tokens`` INT32, ``temperature`` FP32),
each batch decoded to its end, and answers /generate's JSON per prompt. Triton's dynamic batcher merges requests up to
``--max-batch-size`` rows, waiting at most ``--queue-delay-us``;
``bench.peers_run`` picks them by a small sweep and prints the choice.
Server settings are PyTriton's defaults (one model instance, Triton's HTTP
front end with its own thread pool), with the model's call on its one
instance, as every peer runs it.

PyTriton's Python stub fails under this image's pyenv Python; it runs from a
virtual environment made from Debian's Python (``.venv-peers``, which ``make
bench-peers`` makes). Usage::

    python -m bench.peers.triton --model nextword:latest --port 3004 --max-batch-size 64 --queue-delay-us 1000

``bench.peers.kserve`` writes the request bodies.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from bench.launcher import free_port
from service.engine.engine import Engine
from service.engine.types import GenerationRequest, NextWordQuery
from service.http.schemas import generate_output
from service.settings import SETTINGS

MODEL_NAME = "nextword"
GENERATE_MODEL_NAME = "nextword_generate"


def infer_function(model_tag: str):
    engine = Engine.inline(model_tag, replace(SETTINGS.engine_config(), device="cpu"))  # threads as /predict_next's

    @batch
    def infer(text: np.ndarray, top_k: np.ndarray, complete: np.ndarray) -> dict[str, np.ndarray]:
        queries = [
            NextWordQuery(t[0].decode("utf-8"), int(k[0]), bool(c[0]))
            for t, k, c in zip(text, top_k, complete, strict=True)
        ]
        answers = engine.run_predict_next(queries)
        return {"answer": np.array([[json.dumps(a).encode()] for a in answers], dtype=np.object_)}

    return infer, engine


def generate_function(engine: Engine):
    @batch
    def generate(prompt: np.ndarray, max_new_tokens: np.ndarray, temperature: np.ndarray) -> dict[str, np.ndarray]:
        requests = [
            GenerationRequest(p[0].decode("utf-8"), int(n[0]), float(t[0]))
            for p, n, t in zip(prompt, max_new_tokens, temperature, strict=True)
        ]
        answers = [generate_output(g).model_dump_json().encode() for g in engine.run_generate(requests)]
        return {"answer": np.array([[answer] for answer in answers], dtype=np.object_)}

    return generate


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.triton", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--port", type=int, default=3004)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--queue-delay-us", type=int, default=1000, help="the dynamic batcher's longest wait")
    args = parser.parse_args()
    config = TritonConfig(
        http_address="127.0.0.1", http_port=args.port, grpc_port=free_port(), metrics_port=free_port()
    )
    infer, engine = infer_function(args.model)
    batching = ModelConfig(
        max_batch_size=args.max_batch_size,
        batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=GENERATE_MODEL_NAME,
            infer_func=generate_function(engine),
            inputs=[
                Tensor(name="prompt", dtype=bytes, shape=(1,)),
                Tensor(name="max_new_tokens", dtype=np.int32, shape=(1,)),
                Tensor(name="temperature", dtype=np.float32, shape=(1,)),
            ],
            outputs=[Tensor(name="answer", dtype=bytes, shape=(1,))],
            config=batching,
        )
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=infer,
            inputs=[
                Tensor(name="text", dtype=bytes, shape=(1,)),
                Tensor(name="top_k", dtype=np.int32, shape=(1,)),
                Tensor(name="complete", dtype=np.bool_, shape=(1,)),
            ],
            outputs=[Tensor(name="answer", dtype=bytes, shape=(1,))],
            config=batching,
        )
        triton.serve()  # until SIGTERM


if __name__ == "__main__":
    main()
