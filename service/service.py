"""The nextword BentoML service: ``bentoml serve service.service:NextWord`` (or ``make serve``).

Each worker starts the engine (``service.engine.engine``) on ``NEXTWORD_MODEL``, its reports
recorded as metrics, and reports ready on ``/readyz`` once warmed up and calibrated. The HTTP
edge (``service.http``) wears the service; ``docs/architecture.md`` draws the data flow.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import bentoml
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from service.engine.types import Overloaded
from service.http.http_errors import overloaded
from service.http.http_stack import (
    OPENAI,
    answer_directly,
    generate_response,
    install_process_wide,
    next_word_response,
    wear,
)
from service.http.openai.completions import Served
from service.http.schemas import (
    NEXT_WORD_OUTPUTS,
    GenerateBatch,
    GenerateInput,
    GenerateRequest,
    GenerateResults,
    GenerateStreamBatch,
    GenerateStreamRequest,
    NextWordBatch,
    NextWordInput,
    NextWordResults,
    PredictRequest,
    generate_output,
)
from service.http.streaming import sse_events
from service.metrics import MetricsObserver
from service.settings import SETTINGS
from service.startup import announce, model_to_serve, start_engine_or_stop, stored_model_or_exit

install_process_wide()
MODEL_TAG = model_to_serve()


@bentoml.service(name="nextword", **SETTINGS.service_config())
class NextWord:
    """Next-word prediction and text generation with a recurrent language model."""

    stored_model = bentoml.models.BentoModel(str(stored_model_or_exit(MODEL_TAG).tag))

    def __init__(self) -> None:
        self.ready = False
        # Each batch's answers become response models on the model thread, not the busy event loop.
        self.engine = start_engine_or_stop(
            self.stored_model, observer=MetricsObserver(), shape=NEXT_WORD_OUTPUTS.validate_python
        )
        announce(self.engine)
        answer_directly(self.answer_predict_next, self.answer_generate)
        OPENAI.serve(Served.of(self.engine, self.stored_model.info.creation_time, asked_as=MODEL_TAG))
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api(input_spec=PredictRequest, **SETTINGS.api_options())
    async def predict_next(self, inputs: NextWordBatch) -> NextWordResults:
        """Top-k next words, with probabilities, for each text prefix."""
        if SETTINGS.batching == "adaptive":  # BentoML's batching splits this list among the requests
            return await self.engine.predict_next([item.query() for item in inputs])
        return await self.answer_predict_next(inputs)

    async def answer_predict_next(self, inputs: list[NextWordInput]) -> Response:
        """/predict_next's answer, by BentoML's route or the direct one."""
        return next_word_response(await self.engine.predict_next([item.query() for item in inputs]))

    @bentoml.api(input_spec=GenerateRequest)
    async def generate(self, inputs: GenerateBatch) -> GenerateResults:
        """Continue each prompt by sampling from the model."""
        return await self.answer_generate(inputs)

    async def answer_generate(self, inputs: list[GenerateInput]) -> Response:
        """/generate's answer, by BentoML's route or the direct one: the continuations, or 429."""
        try:
            generations = await self.engine.generate([item.request() for item in inputs])
        except Overloaded as error:
            body, headers = overloaded("/generate", error)
            return Response(body, status_code=429, media_type="application/json", headers=headers)
        return generate_response([generate_output(generation) for generation in generations])

    @bentoml.api(input_spec=GenerateStreamRequest)
    async def generate_stream(self, inputs: GenerateStreamBatch, ctx: bentoml.Context) -> AsyncGenerator[str, None]:
        """Continue one prompt, streaming each token as a Server-Sent Event, then a final event."""
        try:
            job = self.engine.stream([item.request() for item in inputs])
        except Overloaded as error:
            # BentoML reads the status and headers after the first chunk, so the refusal is a plain 429.
            body, headers = overloaded("/generate_stream", error)
            ctx.response.status_code = 429
            ctx.response.metadata.update({"content-type": "application/json", **headers})
            yield body.decode()
            return
        async for event in sse_events(job, self.engine):
            yield event


DEMO_PAGE = Path(__file__).parent / "demo"  # the typing page: static files, served at /demo/
NextWord.mount_asgi_app(StaticFiles(directory=DEMO_PAGE, html=True), path="/demo", name="demo")
wear(NextWord)
