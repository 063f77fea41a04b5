"""An empty endpoint with the service's request and response shape: the HTTP floor.

Started exactly like the real service (same settings, batching, validation,
and the same HTTP layers, ``service.http_stack``), it answers at once without
a model or batching, so its requests/s is the most the service's HTTP stack
gives on this machine.
"""

from __future__ import annotations

import gc

import bentoml
from starlette.responses import Response

from service.http_stack import answer_predict_next_directly, install_process_wide, next_word_response, wear
from service.schemas import (
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


@bentoml.service(name="nextword-floor", **SETTINGS.service_config())
class Floor:
    def __init__(self) -> None:
        gc.freeze()  # as the service does after warm-up
        answer_predict_next_directly(self.answer_predict_next)  # as the service does

    @bentoml.api(input_spec=PredictRequest, **SETTINGS.api_options())
    async def predict_next(self, inputs: NextWordBatch) -> NextWordResults:
        if SETTINGS.batching == "adaptive":
            return [FIXED] * len(inputs)
        return await self.answer_predict_next(inputs)  # as the service does

    async def answer_predict_next(self, inputs: list[NextWordInput]) -> Response:
        return next_word_response([FIXED] * len(inputs))


wear(Floor, {"/predict_next"})  # as the service does
