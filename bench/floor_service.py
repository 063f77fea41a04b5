"""An empty endpoint with the service's request and response shape: the HTTP floor.

Started exactly like the real service (same settings, batching, validation,
and the same HTTP layers, ``service.http_stack``), it answers at once without
a model or batching, so its requests/s is the most the service's HTTP stack
gives on this machine.
"""

from __future__ import annotations

import gc

import bentoml

from service.http_stack import install_process_wide, next_word_response, wear
from service.schemas import NextWordBatch, NextWordOutput, NextWordResults, WordProbability
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

    @bentoml.api(**SETTINGS.api_options())
    async def predict_next(self, inputs: NextWordBatch) -> NextWordResults:
        outputs = [FIXED] * len(inputs)
        return outputs if SETTINGS.batching == "adaptive" else next_word_response(outputs)  # as the service does


wear(Floor, {"/predict_next"})  # as the service does
