"""The same model behind a plain FastAPI + uvicorn app, with the project's own micro-batcher.

What the service would be without BentoML: the same ``Engine``, started as
the service starts it (its state cache, its greedy micro-batcher on one model
thread, a lone request on the loop's, the GIL switch interval, the start-up's
objects frozen out of the garbage collector's reach), the same request and
response bodies, uvicorn with uvloop and httptools. It answers
``POST /predict_next`` and ``POST /generate``, the latter batched by request
on the engine's model thread (each batch decoded to its end: no continuous
batching).

Usage::

    python -m bench.peers.plain_fastapi --model nextword:latest --port 3001
"""

from __future__ import annotations

import argparse

import torch
import uvicorn
from fastapi import FastAPI

from service.engine.engine import Engine
from service.engine.types import GenerationRequest
from service.http.schemas import (
    NEXT_WORD_OUTPUTS,
    GenerateOutput,
    GenerateRequest,
    NextWordOutput,
    PredictRequest,
    generate_output,
)
from service.settings import SETTINGS


def create_app(model_tag: str) -> FastAPI:
    # The service's engine: one model thread, the micro-batcher, the GIL switch interval, gc.freeze.
    engine = Engine.start(model_tag, SETTINGS.engine_config(), shape=NEXT_WORD_OUTPUTS.validate_python)
    torch.set_num_threads(1)  # this thread's own, for the lone requests it runs: it will run the event loop

    def generate(requests: list[GenerationRequest]) -> list[GenerateOutput]:
        return [generate_output(generation) for generation in engine.run_generate(requests)]

    # Generation batched by request on the engine's model thread: no continuous batching.
    generation_batcher = engine.batcher_for(generate)
    app = FastAPI()

    @app.post("/generate")
    async def generate_route(request: GenerateRequest) -> list[GenerateOutput]:
        return await generation_batcher.submit([item.request() for item in request.inputs])

    @app.post("/predict_next")
    async def predict_next(request: PredictRequest) -> list[NextWordOutput]:
        return await engine.predict_next([item.query() for item in request.inputs])

    @app.get("/readyz")
    async def ready() -> str:
        return "ok"

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.plain_fastapi", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
