"""The same model behind Ray Serve: one replica, its requests batched by ``@serve.batch``.

Settings, as Ray Serve's docs recommend for a batched CPU model: one
replica, ``max_ongoing_requests`` well above the batch size (its default,
5, would queue requests in the proxy before they could ever form a batch),
the model's call run off the replica's event loop (``asyncio.to_thread``) so
that requests keep arriving while a batch runs, Ray started with this
machine's cores and no dashboard. The batch size and wait come from the
command line; ``bench.peers_run`` picks them by a small sweep and prints the
choice. It answers ``POST /predict_next`` and ``POST /generate`` (batched by
request: each batch decoded to its end) with the service's bodies, and
``GET /readyz`` once the replica is up.

Usage (in ``.venv-peers``, which ``make bench-peers`` makes)::

    python -m bench.peers.ray_serve --model nextword:latest --port 3003 --max-batch-size 32 --batch-wait 0.002
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from dataclasses import replace

import ray
from pydantic import TypeAdapter
from ray import serve
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bench.launcher import REPO
from bench.peers import run_merged
from service.engine.engine import Engine
from service.engine.types import GenerationRequest, NextWordQuery
from service.http.schemas import NEXT_WORD_OUTPUTS, GenerateOutput, GenerateRequest, PredictRequest, generate_output
from service.settings import SETTINGS

MAX_ONGOING_REQUESTS = 256
GENERATE_OUTPUTS = TypeAdapter(list[GenerateOutput])


def deployment(model_tag: str, max_batch_size: int, batch_wait_s: float) -> serve.Application:
    @serve.deployment(num_replicas=1, max_ongoing_requests=MAX_ONGOING_REQUESTS)
    class NextWord:
        def __init__(self) -> None:
            # Loaded on the replica's thread; threads as the service's /predict_next.
            self.engine = Engine.inline(model_tag, replace(SETTINGS.engine_config(), device="cpu"))
            self.lock = threading.Lock()  # one batch at a time on the model, as every peer

        def run(self, flat: list[NextWordQuery]) -> list:
            with self.lock:
                return NEXT_WORD_OUTPUTS.validate_python(self.engine.run_predict_next(flat))

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_s)
        async def predict(self, requests: list[list[NextWordQuery]]) -> list[bytes]:
            answers = await asyncio.to_thread(run_merged, requests, self.run)
            return [NEXT_WORD_OUTPUTS.dump_json(answer) for answer in answers]

        def run_generation(self, flat: list[GenerationRequest]) -> list:
            with self.lock:
                return [generate_output(generation) for generation in self.engine.run_generate(flat)]

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_s)
        async def generate(self, requests: list[list[GenerationRequest]]) -> list[bytes]:
            answers = await asyncio.to_thread(run_merged, requests, self.run_generation)
            return [GENERATE_OUTPUTS.dump_json(answer) for answer in answers]

        async def __call__(self, request: Request) -> Response:
            path = request.url.path.rstrip("/")
            if path.endswith("/readyz"):
                return PlainTextResponse("ok")
            if path.endswith("/generate"):
                prompts = GenerateRequest.model_validate_json(await request.body())
                answer = await self.generate([item.request() for item in prompts.inputs])
                return Response(answer, media_type="application/json")
            body = PredictRequest.model_validate_json(await request.body())
            answer = await self.predict([item.query() for item in body.inputs])
            return Response(answer, media_type="application/json")

    return NextWord.bind()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.ray_serve", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--port", type=int, default=3003)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait", type=float, default=0.002, help="seconds")
    args = parser.parse_args()
    # Ray's workers start from the raylet's environment: they find this repository's packages by it.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(deployment(args.model, args.max_batch_size, args.batch_wait), route_prefix="/")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
