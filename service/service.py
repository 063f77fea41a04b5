"""The nextword BentoML service.

Start it with ``bentoml serve service.service:NextWord`` (or ``make serve``).
Each worker loads ``NEXTWORD_MODEL`` from the BentoML store once, serves a
few warm-up batches, measures its decode rate, and only then reports ready
on ``/readyz``.

This file starts the engine (``service.engine.engine.Engine``: the model
thread, /predict_next's batcher, /generate's scheduler, inference, the state
cache) with the settings, its reports recorded as metrics
(``service.metrics``), behind the HTTP edge (``service.http``: request
models, errors, middleware, the direct route, streaming).
``docs/architecture.md`` draws the data flow.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import NoReturn

import bentoml
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from models.bundle import check_entry
from models.device import precision_name
from service import metrics
from service.engine.engine import Engine
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
from service.serve import mark_failed_start, store_home
from service.settings import SETTINGS

logger = logging.getLogger("nextword")
install_process_wide()


def model_to_serve() -> str:
    """NEXTWORD_MODEL when set; else the model the Bento was built with (``make build`` passes
    ``--arg model=TAG``, which the Bento keeps and its server reads back); else nextword:latest."""
    if "NEXTWORD_MODEL" in os.environ:
        return SETTINGS.model_tag
    return str(getattr(bentoml.use_arguments(), "model", SETTINGS.model_tag))


MODEL_TAG = model_to_serve()


def stored_model_or_exit(tag: str) -> bentoml.Model:
    """The model to serve, checked before any worker starts; else one line and exit status 3."""
    try:
        stored = bentoml.models.get(tag)
        check_entry(stored)
    except bentoml.exceptions.NotFound:
        store = os.path.realpath(store_home(dict(os.environ)) / "models")
        message = f"model {tag} is not in the BentoML store at {store}; train one with make train"
    except ValueError as error:
        message = f"model {tag} cannot be loaded: {error}"
    else:
        return stored
    print(f"nextword: {message}", file=sys.stderr, flush=True)
    raise SystemExit(3)


@bentoml.service(name="nextword", **SETTINGS.service_config())
class NextWord:
    """Next-word prediction and text generation with a recurrent language model."""

    stored_model = bentoml.models.BentoModel(str(stored_model_or_exit(MODEL_TAG).tag))

    def __init__(self) -> None:
        self.ready = False
        try:
            # Each batch's answers become response models on the model thread, not the busy event loop.
            self.engine = Engine.start(
                self.stored_model, SETTINGS.engine_config(), MetricsObserver(), NEXT_WORD_OUTPUTS.validate_python
            )
        except Exception as error:  # a corrupt or incompatible store entry: no worker could ever serve it
            first_line = (str(error).strip().splitlines() or [""])[0]
            stop_server(
                f"cannot load model {self.stored_model.tag} from {self.stored_model.path}: "
                f"{type(error).__name__}: {first_line}"
            )
        bundle = self.engine.bundle
        precision = precision_name(bundle.dtype)
        metrics.MODEL_INFO.labels(str(bundle.tag), bundle.config.architecture, self.engine.device.type, precision).set(
            1
        )
        metrics.show_every_series()
        logger.info(
            "loaded %s (%s) on %s in %s; /predict_next batching %s, /generate batching %s at %.0f tokens/s, "
            "state cache %d MiB",
            bundle.tag,
            bundle.config.architecture,
            self.engine.device,
            precision,
            SETTINGS.batching,
            SETTINGS.generate_batching,
            self.engine.stats().decode_rate,
            SETTINGS.state_cache_mb,
        )
        answer_directly(self.answer_predict_next, self.answer_generate)
        OPENAI.serve(
            Served(
                self.engine,
                model_id=str(bundle.tag),
                names=frozenset({str(bundle.tag), bundle.tag.name, MODEL_TAG}),
                created=int(self.stored_model.info.creation_time.timestamp()),
                metadata=bundle.metadata,
            )
        )
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


def stop_server(message: str) -> NoReturn:
    """Log one line and stop the whole server with a failure status.

    A worker whose ``__init__`` raises is restarted by BentoML's process
    manager every few seconds, forever, never ready. So the worker asks the
    server process (its parent) to shut down, and exits with status 3. The
    server process itself then exits 0 (its process manager quit cleanly), so
    the worker also leaves a mark that ``service.serve`` turns into status 3.
    """
    logger.critical("nextword: %s; stopping the server", message)
    mark_failed_start(message)  # service.serve (make serve) then exits with status 3
    os.kill(os.getppid(), signal.SIGTERM)
    os._exit(3)


DEMO_PAGE = Path(__file__).parent / "demo"  # the typing page: static files, served at /demo/
NextWord.mount_asgi_app(StaticFiles(directory=DEMO_PAGE, html=True), path="/demo", name="demo")
wear(NextWord)
