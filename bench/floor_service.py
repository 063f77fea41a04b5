"""An empty endpoint with the service's request and response shape: the HTTP floor.

Started exactly like the real service (same settings, batching, validation,
and the same HTTP layers, ``service.http.http_stack``), ``Floor`` answers at once
without a model or batching, so its requests/s is the most the service's HTTP
stack gives on this machine. ``BatchedFloor`` answers through the service's
batcher and model thread, with a model that costs nothing: between the two
floors and the service, the benchmark tells the batcher's cost from the model's.
"""

from __future__ import annotations

import gc

import bentoml
from starlette.responses import Response

from service.engine.batcher import RUN_HERE_UP_TO, MicroBatcher
from service.engine.model_thread import ModelThread
from service.http.http_stack import answer_directly, install_process_wide, next_word_response, wear
from service.http.schemas import (
    NextWordBatch,
    NextWordInput,
    NextWordOutput,
    NextWordResults,
    PredictRequest,
    WordProbability,
)
from service.settings import SETTINGS

install_process_wide()  # as the service does
FIXED = NextWordOutput(
    predictions=[WordProbability(word=w, probability=0.1) for w in ("the", "a", "of", "and", "in")],
    tokens=10,
    unknown=0,
)


def fixed_outputs(inputs: list[NextWordInput]) -> list[NextWordOutput]:
    """A model that costs nothing."""
    return [FIXED] * len(inputs)


@bentoml.service(name="nextword-floor", **SETTINGS.service_config())
class Floor:
    def __init__(self) -> None:
        gc.freeze()  # as the service does after warm-up
        answer_directly(self.answer_predict_next)  # as the service does

    @bentoml.api(input_spec=PredictRequest, **SETTINGS.api_options())
    async def predict_next(self, inputs: NextWordBatch) -> NextWordResults:
        if SETTINGS.batching == "adaptive":
            return fixed_outputs(inputs)
        return await self.answer_predict_next(inputs)  # as the service does

    async def answer_predict_next(self, inputs: list[NextWordInput]) -> Response:
        return next_word_response(fixed_outputs(inputs))


wear(Floor)  # as the service does


@bentoml.service(name="nextword-floor-batched", **SETTINGS.service_config())
class BatchedFloor:
    def __init__(self) -> None:
        gc.freeze()
        merge = SETTINGS.batching == "on"
        self.batcher = MicroBatcher(  # as the service's
            fixed_outputs, ModelThread(), SETTINGS.max_batch_size, merge, run_here_up_to=RUN_HERE_UP_TO
        )
        answer_directly(self.answer_predict_next)

    @bentoml.api(input_spec=PredictRequest, **SETTINGS.api_options())
    async def predict_next(self, inputs: NextWordBatch) -> NextWordResults:
        return await self.answer_predict_next(inputs)

    async def answer_predict_next(self, inputs: list[NextWordInput]) -> Response:
        return next_word_response(await self.batcher.submit(inputs))


wear(BatchedFloor)
