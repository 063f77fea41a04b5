"""The nextword BentoML service.

Start it with ``bentoml serve service.service:NextWord`` (or ``make serve``).
Each worker loads ``NEXTWORD_MODEL`` from the BentoML store once, serves a
few warm-up batches, measures its decode rate, and only then reports ready
on ``/readyz``. Requests are validated by BentoML against
``service.schemas``. /predict_next requests are merged into batches by
``service.batcher`` (or BentoML's adaptive batching, see
``NEXTWORD_BATCHING``); /generate and /generate_stream rows are decoded step
by step by ``service.scheduler``, and streamed by ``service.streaming``.
``service.inference`` runs the math, ``service.state_cache`` spares it the
prefixes it has seen. This class is the HTTP layer over them.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import bentoml
import torch
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from models.bundle import check_entry
from models.device import pick_device, precision_name
from service import metrics
from service.batcher import RUN_HERE_UP_TO, MicroBatcher
from service.http_stack import answer_predict_next_directly, install_process_wide, next_word_response, wear
from service.inference import load_predictor
from service.model_thread import ModelThread
from service.scheduler import Overloaded, Scheduler, SchedulerConfig, Shed
from service.schemas import (
    GenerateBatch,
    GenerateRequest,
    GenerateResults,
    GenerateStreamBatch,
    GenerateStreamRequest,
    NextWordBatch,
    NextWordInput,
    NextWordResults,
    PredictRequest,
)
from service.serve import mark_failed_start, store_home
from service.settings import SETTINGS
from service.streaming import sse_events

logger = logging.getLogger("nextword")
install_process_wide()
In = TypeVar("In")
Out = TypeVar("Out")

# Batches smaller than this run on one torch thread: for them, waking a second
# idle core costs more than it saves (measured: 1 input after an idle gap,
# 8 ms on 2 threads, 3 ms on 1), while large batches gain from every core.
SMALL_BATCH = 8

# The model thread needs the GIL back from the busy event loop to collect each
# finished batch, and Python makes it wait up to the switch interval (5 ms by
# default). Measured at 64 clients: service/floor 0.70 at 5 ms, 0.74 at 0.2 ms.
GIL_SWITCH_INTERVAL_S = 0.0002


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

    stored_model = bentoml.models.BentoModel(str(stored_model_or_exit(SETTINGS.model_tag).tag))

    def __init__(self) -> None:
        self.ready = False
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        device = pick_device(SETTINGS.device)
        # Every torch call, loading and warm-up included, runs on the model thread.
        # OpenMP keeps a thread team per calling thread, and torch.set_num_threads
        # only sets the caller's: a second team (from loading on the main thread,
        # say) leaves more OpenMP threads than cores, and libgomp then sleeps at
        # every barrier instead of spinning. Measured: a batch of 128 took 12 ms
        # instead of 8 once any second thread had run torch with two threads.
        # The one exception, a lone one-input request while this thread is idle
        # (service.batcher), runs on the loop's thread with one torch thread: no team.
        model_thread = ModelThread()
        try:
            bundle, self.predictor = model_thread.submit(load_predictor, self.stored_model, device).result()
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
            threads_for=lambda rows: use_threads_for(rows, spare_loop_core=False),
        )
        model_thread.submit(self.scheduler.calibrate).result()
        # Startup leaves some 200,000 long-lived objects (torch, BentoML, the
        # model, the vocabulary) that every full garbage collection would walk
        # again while serving. Measured at 64 clients: +4 to +8% requests/s.
        gc.freeze()
        merge = SETTINGS.batching == "on"
        self.predict_batcher = MicroBatcher(
            self._predict_batch, model_thread, SETTINGS.max_batch_size, merge, run_here_up_to=RUN_HERE_UP_TO
        )
        precision = precision_name(bundle.dtype)
        metrics.MODEL_INFO.labels(str(bundle.tag), bundle.config.architecture, device.type, precision).set(1)
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
        answer_predict_next_directly(self.answer_predict_next)
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api(input_spec=PredictRequest, **SETTINGS.api_options())
    async def predict_next(self, inputs: NextWordBatch) -> NextWordResults:
        """Top-k next words, with probabilities, for each text prefix."""
        if SETTINGS.batching == "adaptive":  # BentoML's batching splits this list among the requests
            return await self.predict_batcher.submit(inputs)
        return await self.answer_predict_next(inputs)

    async def answer_predict_next(self, inputs: list[NextWordInput]) -> Response:
        """/predict_next's answer, by BentoML's route or the direct one."""
        return next_word_response(await self.predict_batcher.submit(inputs))

    @bentoml.api(input_spec=GenerateRequest)
    async def generate(self, inputs: GenerateBatch) -> GenerateResults:
        """Continue each prompt by sampling from the model."""
        try:
            return await self.scheduler.generate(inputs)
        except Overloaded as error:
            return JSONResponse(overloaded_body(error), status_code=429, headers=retry_after(error))

    @bentoml.api(input_spec=GenerateStreamRequest)
    async def generate_stream(self, inputs: GenerateStreamBatch, ctx: bentoml.Context) -> AsyncGenerator[str, None]:
        """Continue one prompt, streaming each token as a Server-Sent Event, then a final event."""
        try:
            job = self.scheduler.submit(inputs, stream=True)
        except Overloaded as error:
            # BentoML reads the status and headers after the first chunk, so the refusal is a plain 429.
            ctx.response.status_code = 429
            ctx.response.metadata.update({"content-type": "application/json", **retry_after(error)})
            yield json.dumps(overloaded_body(error))
            return
        async for event in sse_events(job, self.predictor):
            yield event

    def _predict_batch(self, inputs: list[NextWordInput]) -> NextWordResults:
        outputs = run_measured("predict_next", self.predictor.predict_next, inputs)
        metrics.TOKENS_PROCESSED.labels("predict_next").inc(sum(o.tokens for o in outputs))
        metrics.UNKNOWN_TOKENS.labels("predict_next").inc(sum(o.unknown for o in outputs))
        metrics.record_cache(self.predictor.cache)
        return outputs


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


def run_measured(endpoint: str, run: Callable[[list[In]], list[Out]], inputs: list[In]) -> list[Out]:
    """Run one batch on the right number of threads, recording its size and time."""
    use_threads_for(len(inputs), spare_loop_core=endpoint == "predict_next")
    started = time.perf_counter()
    outputs = run(inputs)
    metrics.INFERENCE_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
    metrics.BATCH_SIZE.labels(endpoint).observe(len(inputs))
    return outputs


def use_threads_for(batch_size: int, spare_loop_core: bool) -> None:
    threads = 1 if batch_size < SMALL_BATCH else large_batch_threads(spare_loop_core)
    if torch.get_num_threads() != threads:  # decode steps come hundreds a second
        torch.set_num_threads(threads)


@functools.cache
def large_batch_threads(spare_loop_core: bool) -> int:
    """Read once: counting the cores reads the cgroup's CPU quota from a file, and batches come hundreds a second."""
    return SETTINGS.threads_per_worker(spare_loop_core)


DEMO_PAGE = Path(__file__).parent / "demo"  # the typing page: static files, served at /demo/
API_ROUTES = {"/predict_next", "/generate", "/generate_stream"}
NextWord.mount_asgi_app(StaticFiles(directory=DEMO_PAGE, html=True), path="/demo", name="demo")
wear(NextWord, API_ROUTES)
