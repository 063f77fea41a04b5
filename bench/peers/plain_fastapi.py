"""The same model behind a plain FastAPI + uvicorn app, with the project's own micro-batcher.

What the service would be without BentoML: the same ``Predictor`` (state
cache included), the same greedy ``MicroBatcher`` on one model thread (a lone request on the loop's), the
same request and response bodies, the same process settings (the GIL switch interval, the
start-up's objects frozen out of the garbage collector's reach), uvicorn with uvloop and httptools. It
answers ``POST /predict_next`` and ``POST /generate``, the latter batched by
request (each batch decoded to its end: no continuous batching).

Usage::

    python -m bench.peers.plain_fastapi --model nextword:latest --port 3001
"""

from __future__ import annotations

import argparse
import gc
import sys

import bentoml
import torch
import uvicorn
from fastapi import FastAPI

from models.device import pick_device
from service.engine.batcher import RUN_HERE_UP_TO, MicroBatcher
from service.engine.inference import load_predictor
from service.engine.model_thread import GIL_SWITCH_INTERVAL_S, ModelThread
from service.engine.threads import TorchThreads
from service.engine.types import GenerationRequest, NextWordQuery
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
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    model_thread = ModelThread("peer-model")
    device = pick_device(SETTINGS.device)
    threads = TorchThreads(SETTINGS.threads_per_worker(), SETTINGS.threads_per_worker(spare_loop_core=True))
    stored = bentoml.models.get(model_tag)
    predictor = model_thread.submit(
        load_predictor, stored, device, SETTINGS.precision, SETTINGS.state_cache_mb, threads
    ).result()
    model_thread.submit(torch.set_num_threads, threads.large_predict_batch).result()
    torch.set_num_threads(1)  # this thread's own, for the lone requests it runs: it will run the event loop

    def answer(queries: list[NextWordQuery]) -> list[NextWordOutput]:
        return NEXT_WORD_OUTPUTS.validate_python(predictor.predict_next(queries))

    def generate(requests: list[GenerationRequest]) -> list[GenerateOutput]:
        return [generate_output(generation) for generation in predictor.generate(requests)]

    batcher = MicroBatcher(answer, model_thread, SETTINGS.max_batch_size, run_here_up_to=RUN_HERE_UP_TO)
    generation_batcher = MicroBatcher(generate, model_thread, SETTINGS.max_batch_size)
    app = FastAPI()

    @app.post("/generate")
    async def generate_route(request: GenerateRequest) -> list[GenerateOutput]:
        return await generation_batcher.submit([item.request() for item in request.inputs])

    @app.post("/predict_next")
    async def predict_next(request: PredictRequest) -> list[NextWordOutput]:
        return await batcher.submit([item.query() for item in request.inputs])

    @app.get("/readyz")
    async def ready() -> str:
        return "ok"

    gc.freeze()  # as the service does after start-up: full collections no longer walk torch and the model
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.plain_fastapi", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
