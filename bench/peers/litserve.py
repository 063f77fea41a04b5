"""The same model behind LitServe, with LitServe's own batching.

LitServe batches requests: ``batch`` gets the decoded requests (each a list
of inputs, as in the service's body), ``predict`` runs them as one model
batch and ``unbatch`` hands each request its answers. The batch size and
timeout come from the command line; ``bench.peers_run`` picks them by a
small sweep and prints the choice. It answers ``POST /predict_next`` with
the service's request and response bodies; with ``--api generate``, ``POST
/generate`` instead, batched by request: each batch decoded to its end. One
API a server: LitServe gives each its own worker and copy of the model.

Usage::

    python -m bench.peers.litserve --model nextword:latest --port 3002 --max-batch-size 64 --batch-timeout 0.002
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import litserve as ls
import torch

from bench.peers import run_merged
from service.engine.engine import Engine
from service.engine.types import GenerationRequest, NextWordQuery
from service.http.schemas import NEXT_WORD_OUTPUTS, GenerateRequest, PredictRequest, generate_output
from service.settings import SETTINGS


class NextWordAPI(ls.LitAPI):
    def __init__(
        self, model_tag: str, max_batch_size: int, batch_timeout: float, api_path: str = "/predict_next"
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=api_path)
        self.model_tag = model_tag
        self.engine: Engine | None = None

    def setup(self, device: str) -> None:
        # On LitServe's inference thread, which runs every batch: threads as the service's /predict_next.
        self.engine = Engine.inline(self.model_tag, replace(SETTINGS.engine_config(), device=device.split(":")[0]))

    def decode_request(self, request: dict) -> list[NextWordQuery]:
        return [item.query() for item in PredictRequest.model_validate(request).inputs]

    def batch(self, inputs: list[list[NextWordQuery]]) -> list[list[NextWordQuery]]:
        return inputs

    def predict(self, requests: list[list[NextWordQuery]] | list[NextWordQuery]) -> list:
        if self.max_batch_size == 1:  # unbatched: one request's inputs
            return NEXT_WORD_OUTPUTS.validate_python(self.engine.run_predict_next(requests))
        return run_merged(requests, lambda flat: NEXT_WORD_OUTPUTS.validate_python(self.engine.run_predict_next(flat)))

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: list) -> list[dict]:
        return [answer.model_dump() for answer in output]


class GenerateAPI(NextWordAPI):
    """/generate: each request's prompts; a batch of requests decoded together to its end."""

    def decode_request(self, request: dict) -> list[GenerationRequest]:  # type: ignore[override]
        return [item.request() for item in GenerateRequest.model_validate(request).inputs]

    def predict(self, requests: list) -> list:  # type: ignore[override]
        if self.max_batch_size == 1:
            return [generate_output(g) for g in self.engine.run_generate(requests)]
        return run_merged(requests, lambda flat: [generate_output(g) for g in self.engine.run_generate(flat)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.litserve", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--port", type=int, default=3002)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.002, help="seconds")
    parser.add_argument("--api", choices=("predict_next", "generate"), default="predict_next")
    args = parser.parse_args()
    if args.api == "generate":
        api = GenerateAPI(args.model, args.max_batch_size, args.batch_timeout, api_path="/generate")
    else:
        api = NextWordAPI(args.model, args.max_batch_size, args.batch_timeout)
    server = ls.LitServer(api, accelerator="cuda" if torch.cuda.is_available() else "cpu", workers_per_device=1)
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
