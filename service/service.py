"""The nextword BentoML service.

Start it with ``bentoml serve service.service:NextWord`` (or ``make serve``).
It loads ``NEXTWORD_MODEL`` from the BentoML store once per worker, serves one
warm-up batch, and only then reports ready on ``/readyz``. Both endpoints are
batchable: BentoML merges concurrent requests into one call of the method,
and each request gets its own slice of the answers back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import bentoml
import torch

from models.bundle import load_bundle
from models.device import pick_device
from service import metrics
from service.body_limit import BodySizeLimit
from service.inference import Predictor
from service.schemas import GenerateBatch, GenerateOutput, NextWordBatch, NextWordOutput
from service.settings import SETTINGS

logger = logging.getLogger("nextword")


@contextmanager
def observe_batch(endpoint: str, size: int) -> Iterator[None]:
    """Record one batch's size and inference time."""
    metrics.BATCH_SIZE.labels(endpoint).observe(size)
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.INFERENCE_SECONDS.labels(endpoint).observe(time.perf_counter() - started)


@bentoml.service(name="nextword", **SETTINGS.service_config())
class NextWord:
    """Next-word prediction and text generation with a recurrent language model."""

    stored_model = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        self.ready = False
        device = pick_device(SETTINGS.device)
        torch.set_num_threads(SETTINGS.threads_per_worker())
        bundle = load_bundle(self.stored_model, device)
        self.predictor = Predictor(bundle, device)
        self.predictor.warm_up()
        metrics.MODEL_INFO.labels(str(bundle.tag), bundle.config.architecture, device.type).set(1)
        logger.info("loaded %s (%s) on %s", bundle.tag, bundle.config.architecture, device)
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api(**SETTINGS.api_options())
    def predict_next(self, inputs: NextWordBatch) -> list[NextWordOutput]:
        """Top-k next words, with probabilities, for each text prefix."""
        with observe_batch("predict_next", len(inputs)):
            outputs = self.predictor.predict_next(inputs)
        metrics.TOKENS_PROCESSED.labels("predict_next").inc(sum(o.tokens for o in outputs))
        metrics.UNKNOWN_TOKENS.labels("predict_next").inc(sum(o.unknown for o in outputs))
        return outputs

    @bentoml.api(**SETTINGS.api_options())
    def generate(self, inputs: GenerateBatch) -> list[GenerateOutput]:
        """Continue each prompt by sampling from the model."""
        with observe_batch("generate", len(inputs)):
            outputs = self.predictor.generate(inputs)
        metrics.TOKENS_PROCESSED.labels("generate").inc(sum(o.prompt_tokens for o in outputs))
        metrics.UNKNOWN_TOKENS.labels("generate").inc(sum(o.unknown for o in outputs))
        metrics.TOKENS_GENERATED.inc(sum(len(o.tokens) for o in outputs))
        return outputs


NextWord.add_asgi_middleware(BodySizeLimit, max_bytes=SETTINGS.max_body_bytes)
