"""The nextword BentoML service.

Start it with ``bentoml serve service.service:NextWord`` (or ``make serve``).
Each worker loads ``NEXTWORD_MODEL`` from the BentoML store once, serves a
few warm-up batches, measures its decode rate, and only then reports ready
on ``/readyz``.

This file wires the two layers together with the settings: the HTTP edge
(``service.http``: request models, errors, middleware, the direct route,
streaming) and the engine (``service.engine``: /predict_next's batcher,
/generate's scheduler, the model thread, inference, the state cache).
``docs/architecture.md`` draws the data flow.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import NoReturn

import bentoml
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from models.bundle import check_entry
from models.device import pick_device, precision_name
from service import metrics
from service.engine.batcher import RUN_HERE_UP_TO, MicroBatcher
from service.engine.inference import load_predictor
from service.engine.job import Overloaded, Shed
from service.engine.model_thread import GIL_SWITCH_INTERVAL_S, ModelThread
from service.engine.scheduler import Scheduler, SchedulerConfig
from service.engine.threads import TorchThreads
from service.engine.types import NextWordQuery
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
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        device = pick_device(SETTINGS.device)
        self.threads = TorchThreads(SETTINGS.threads_per_worker(), SETTINGS.threads_per_worker(spare_loop_core=True))
        # Every torch call, loading and warm-up included, runs on the model thread.
        # OpenMP keeps a thread team per calling thread, and torch.set_num_threads
        # only sets the caller's: a second team (from loading on the main thread,
        # say) leaves more OpenMP threads than cores, and libgomp then sleeps at
        # every barrier instead of spinning, and a batch of 128 ran 1.5 times as long
        # instead of 8 once any second thread had run torch with two threads (docs/benchmarks.md).
        # The one exception, a lone one-input request while this thread is idle
        # (service.engine.batcher), runs on the loop's thread with one torch thread: no team.
        model_thread = ModelThread()
        try:
            self.predictor = model_thread.submit(
                load_predictor,
                self.stored_model,
                device,
                SETTINGS.precision,
                SETTINGS.state_cache_mb,
                self.threads,
                SETTINGS.blocklist,
            ).result()
        except Exception as error:  # a corrupt or incompatible store entry: no worker could ever serve it
            first_line = (str(error).strip().splitlines() or [""])[0]
            stop_server(
                f"cannot load model {self.stored_model.tag} from {self.stored_model.path}: "
                f"{type(error).__name__}: {first_line}"
            )
        self.scheduler = Scheduler(
            self.predictor,
            model_thread,
            SchedulerConfig(
                policy=SETTINGS.generate_batching,
                max_rows=SETTINGS.max_batch_size,
                timeout_s=SETTINGS.timeout_s,
                max_queued_tokens=SETTINGS.max_queued_tokens,
            ),
            threads_for=self.threads.for_generate,
        )
        model_thread.submit(self.scheduler.calibrate).result()
        # Startup leaves some 200,000 long-lived objects (torch, BentoML, the
        # model, the vocabulary) that every full garbage collection would walk
        # again while serving (docs/benchmarks.md has the gain).
        gc.freeze()
        merge = SETTINGS.batching == "on"
        self.predict_batcher = MicroBatcher(
            self._predict_batch, model_thread, SETTINGS.max_batch_size, merge, run_here_up_to=RUN_HERE_UP_TO
        )
        bundle = self.predictor.bundle
        precision = precision_name(bundle.dtype)
        metrics.MODEL_INFO.labels(str(bundle.tag), bundle.config.architecture, device.type, precision).set(1)
        metrics.show_every_series()
        logger.info(
            "loaded %s (%s) on %s in %s; /predict_next batching %s, /generate batching %s at %.0f tokens/s, "
            "state cache %d MiB",
            bundle.tag,
            bundle.config.architecture,
            device,
            precision,
            SETTINGS.batching,
            SETTINGS.generate_batching,
            self.scheduler.rate,
            SETTINGS.state_cache_mb,
        )
        answer_directly(self.answer_predict_next, self.answer_generate)
        OPENAI.serve(
            Served(
                self.predictor,
                self.scheduler,
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
            return await self.predict_batcher.submit([item.query() for item in inputs])
        return await self.answer_predict_next(inputs)

    async def answer_predict_next(self, inputs: list[NextWordInput]) -> Response:
        """/predict_next's answer, by BentoML's route or the direct one."""
        return next_word_response(await self.predict_batcher.submit([item.query() for item in inputs]))

    @bentoml.api(input_spec=GenerateRequest)
    async def generate(self, inputs: GenerateBatch) -> GenerateResults:
        """Continue each prompt by sampling from the model."""
        return await self.answer_generate(inputs)

    async def answer_generate(self, inputs: list[GenerateInput]) -> Response:
        """/generate's answer, by BentoML's route or the direct one: the continuations, or 429."""
        try:
            generations = await self.scheduler.generate([item.request() for item in inputs])
        except Overloaded as error:
            return JSONResponse(overloaded_body(error), status_code=429, headers=retry_after(error))
        return generate_response([generate_output(generation) for generation in generations])

    @bentoml.api(input_spec=GenerateStreamRequest)
    async def generate_stream(self, inputs: GenerateStreamBatch, ctx: bentoml.Context) -> AsyncGenerator[str, None]:
        """Continue one prompt, streaming each token as a Server-Sent Event, then a final event."""
        try:
            job = self.scheduler.submit([item.request() for item in inputs], stream=True)
        except Overloaded as error:
            # BentoML reads the status and headers after the first chunk, so the refusal is a plain 429.
            ctx.response.status_code = 429
            ctx.response.metadata.update({"content-type": "application/json", **retry_after(error)})
            yield json.dumps(overloaded_body(error))
            return
        async for event in sse_events(job, self.predictor):
            yield event

    def _predict_batch(self, queries: list[NextWordQuery]) -> NextWordResults:
        """One /predict_next batch, on the model thread: run, measured, and built into response models."""
        self.threads.use_for(len(queries), spare_loop_core=True)
        started = time.perf_counter()
        answers = self.predictor.predict_next(queries)
        recorded = metrics.for_endpoint("predict_next")
        recorded.record_batch(len(queries), time.perf_counter() - started)
        recorded.record_unknown(sum(answer["unknown"] for answer in answers))
        metrics.record_cache(self.predictor.cache)
        recorded.record_tokens(self.predictor.take_tally())
        # One pydantic-core call for the batch, here on the model thread rather than the busy event loop.
        return NEXT_WORD_OUTPUTS.validate_python(answers)


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


def overloaded_body(error: Overloaded) -> dict:
    kind = "shed" if isinstance(error, Shed) else "overloaded"  # refused from the queue, or at once
    return {"error": str(error), "detail": [{"loc": ["inputs"], "msg": str(error), "type": kind}]}


def retry_after(error: Overloaded) -> dict[str, str]:
    return {"retry-after": str(error.retry_after_s)}


DEMO_PAGE = Path(__file__).parent / "demo"  # the typing page: static files, served at /demo/
NextWord.mount_asgi_app(StaticFiles(directory=DEMO_PAGE, html=True), path="/demo", name="demo")
wear(NextWord)
