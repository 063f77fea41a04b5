"""The engine's one front door: the service, the OpenAI routes and the benchmarks all enter by ``Engine``.

Usage::

    engine = Engine.start("nextword:latest", EngineConfig(state_cache_mb=64), observer=MetricsObserver())
    answers = await engine.predict_next([NextWordQuery("the cat", top_k=3)])
    generations = await engine.generate([GenerationRequest("the", max_new_tokens=8, seed=1)])
    job = engine.stream([GenerationRequest("the", max_new_tokens=8)])  # raises Overloaded: 429
    async for row, token in job.tokens(): ...
    engine.close()

``Engine.start`` owns what a worker runs the model with, as vLLM's
``AsyncLLM`` and TGI's ``Infer`` do: the one model thread every torch call
runs on (``service.engine.model_thread``: a second OpenMP team slows every
batch), the torch threads per batch size, the ``Predictor`` with its state
cache, /predict_next's micro-batcher and /generate's scheduler, calibrated
before it returns. What it did is reported to an ``Observer``
(``service.engine.reports``), never recorded here.

``Engine.inline`` is the same model without threads of its own, for a
server that batches and schedules by itself (the peers of ``bench/peers``)
and for in-process benchmarks: ``run_predict_next`` and ``run_generate``
run on the calling thread.

The edge imports this module and ``service.engine.types`` only (an
import-linter contract); ``Job`` and ``Row`` are the handles it holds.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import bentoml
import torch

from models.bundle import ModelBundle
from models.device import pick_device
from models.tokenizer import Tokenizer
from models.vocab import Vocabulary
from service.engine.batcher import RUN_HERE_UP_TO, MicroBatcher
from service.engine.inference import Predictor, load_predictor
from service.engine.model_thread import GIL_SWITCH_INTERVAL_S, ModelThread
from service.engine.reports import BatchReport, CacheReport, Observer
from service.engine.request import Encoded, Job, Row
from service.engine.scheduler import Scheduler, SchedulerConfig
from service.engine.threads import TorchThreads
from service.engine.types import (
    BatchingPolicy,
    Generation,
    GenerationRequest,
    NextWordQuery,
    NextWords,
    TokenLogprob,
)

__all__ = ["Engine", "EngineConfig", "EngineStats", "Job", "Row"]
In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class EngineConfig:
    """How a worker runs its model; ``service.settings.Settings.engine_config`` reads it from the environment."""

    device: str = "cpu"  # as models.device.pick_device reads it: auto, cpu, cuda
    precision: str = "float32"  # as models.device.pick_dtype reads it
    threads: int = field(default_factory=torch.get_num_threads)  # torch threads for a large batch
    predict_threads: int = field(default_factory=torch.get_num_threads)  # the same for /predict_next
    state_cache_mb: int = 0  # 0: no state cache
    blocklist: tuple[str, ...] = ()  # words never offered (service.engine.blocklist)
    merge_requests: bool = True  # /predict_next: queued requests share a batch; False: one request a batch
    max_batch_size: int = 32  # inputs in a /predict_next batch, rows in a decode step
    generate_batching: BatchingPolicy = BatchingPolicy.CONTINUOUS
    timeout_s: float = 60.0  # the request timeout that admission keeps generation within
    max_queued_tokens: int = 0  # bound on outstanding generation tokens; 0 derives it from the rate


@dataclass(frozen=True, slots=True)
class EngineStats:
    """The engine's state at a glance."""

    decode_rate: float | None  # tokens/s with every decode slot taken (None: inline, not measured)
    outstanding_tokens: int  # generation tokens admitted and not yet generated
    running_rows: int
    queued_rows: int


class Engine:
    """One worker's model, its threads, its batcher and its scheduler."""

    def __init__(self, predictor: Predictor, config: EngineConfig, threads: TorchThreads, observer: Observer) -> None:
        self.predictor = predictor
        self.config = config
        self.threads = threads
        self.observer = observer
        self.model_thread: ModelThread | None = None
        self.scheduler: Scheduler | None = None
        self.batcher: MicroBatcher[NextWordQuery, Any] | None = None
        self.shape: Callable[[list[NextWords]], list[Any]] = lambda answers: answers

    @classmethod
    def start(
        cls,
        stored: bentoml.Model | str,
        config: EngineConfig,
        observer: Observer | None = None,
        shape: Callable[[list[NextWords]], list[Any]] | None = None,
    ) -> Engine:
        """Load ``stored`` on a model thread of its own, serve warm-up batches and measure the
        decode rate: an engine ready to serve. ``shape`` turns each /predict_next batch's answers
        into what ``predict_next`` returns (the edge's response models), on the model thread, so
        that the busy event loop does not."""
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        threads = TorchThreads(config.threads, config.predict_threads)
        model_thread = ModelThread()
        predictor = model_thread.submit(load, stored, config, threads).result()
        engine = cls(predictor, config, threads, observer or Observer())
        engine.model_thread = model_thread
        if shape is not None:
            engine.shape = shape
        engine.scheduler = Scheduler(
            predictor,
            model_thread,
            SchedulerConfig(
                policy=config.generate_batching,
                max_rows=config.max_batch_size,
                timeout_s=config.timeout_s,
                max_queued_tokens=config.max_queued_tokens,
            ),
            threads_for=threads.for_generate,
            observer=engine.observer,
        )
        model_thread.submit(engine.scheduler.calibrate).result()
        engine.batcher = MicroBatcher(
            engine._predict_batch,
            model_thread,
            config.max_batch_size,
            config.merge_requests,
            run_here_up_to=RUN_HERE_UP_TO,
        )
        # Start-up leaves some 200,000 long-lived objects (torch, the model, the vocabulary) that
        # every full garbage collection would walk again while serving (docs/benchmarks.md has the gain).
        gc.freeze()
        return engine

    @classmethod
    def inline(cls, stored: bentoml.Model | str, config: EngineConfig, observer: Observer | None = None) -> Engine:
        """Load ``stored`` on the calling thread, which alone runs it (``run_predict_next``,
        ``run_generate``): for a server that batches by itself, and for in-process benchmarks."""
        threads = TorchThreads(config.threads, config.predict_threads)
        engine = cls(load(stored, config, threads), config, threads, observer or Observer())
        torch.set_num_threads(config.predict_threads)  # as a served /predict_next batch runs
        return engine

    # -- what the model is -----------------------------------------------------------------------

    @property
    def bundle(self) -> ModelBundle:
        return self.predictor.bundle

    @property
    def vocab(self) -> Vocabulary:
        return self.predictor.vocab

    @property
    def tokenizer(self) -> Tokenizer:
        return self.predictor.tokenizer

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def tokenize(self, text: str) -> Encoded:
        """A text as the model reads it: ids after the leading line break, with its counts."""
        return self.predictor.encode(text)

    def output(self, row: Row) -> Generation:
        """A finished row of a streamed job as its ``Generation``."""
        return self.predictor.output(row)

    def stats(self) -> EngineStats:
        scheduler = self.scheduler
        if scheduler is None:
            return EngineStats(None, 0, 0, 0)
        running = len(scheduler.batch.rows) if scheduler.batch is not None else 0
        return EngineStats(scheduler.rate, scheduler.outstanding_tokens, running, len(scheduler.waiting))

    # -- served: on the event loop -----------------------------------------------------------------

    async def predict_next(self, queries: list[NextWordQuery]) -> list[Any]:
        """Each query's next words, batched with the other requests queued meanwhile, shaped."""
        return await self._started(self.batcher).submit(queries)

    async def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """Whole continuations, once every row has finished; raises ``Overloaded``."""
        return await self._started(self.scheduler).generate(requests)

    def stream(self, requests: list[GenerationRequest]) -> Job:
        """A job whose tokens come as they are generated (``Job.tokens``); raises ``Overloaded``."""
        return self._started(self.scheduler).submit(requests, stream=True)

    async def score(self, rows: list[list[int]], top: int) -> list[list[TokenLogprob | None]]:
        """Every id's log-probability after those before it, between two generation steps."""
        return await self._started(self.scheduler).score(rows, top)

    def batcher_for(self, run_batch: Callable[[list[In]], list[Out]]) -> MicroBatcher[In, Out]:
        """A micro-batcher that runs ``run_batch`` on the engine's model thread, between its other
        work: for a server that batches some requests its own way (``bench.peers.plain_fastapi``'s
        /generate, decoded a whole batch at a time with ``run_generate``)."""
        return MicroBatcher(run_batch, self._started(self.model_thread), self.config.max_batch_size)

    def close(self) -> None:
        """Let the model thread finish what it runs, and end it."""
        if self.model_thread is not None:
            self.model_thread.shutdown(wait=True)

    # -- inline: on the calling thread ---------------------------------------------------------------

    def run_predict_next(self, queries: list[NextWordQuery]) -> list[NextWords]:
        """One /predict_next batch now, on the calling thread (``Engine.inline``)."""
        return self._predict(queries)

    def run_generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """Decode one batch to its end now, on the calling thread: ``Engine.inline``'s, or the
        model thread by ``batcher_for``."""
        return self.predictor.generate(requests)

    # -- on the model thread ---------------------------------------------------------------------

    def _predict_batch(self, queries: list[NextWordQuery]) -> list[Any]:
        """One /predict_next batch of the batcher, on the model thread (or a lone one on the loop's)."""
        self.threads.use_for(len(queries), spare_loop_core=True)
        return self.shape(self._predict(queries))

    def _predict(self, queries: list[NextWordQuery]) -> list[NextWords]:
        started = time.perf_counter()
        answers = self.predictor.predict_next(queries)
        seconds = time.perf_counter() - started
        unknown = sum(answer["unknown"] for answer in answers)
        tally = self.predictor.take_tally()
        self.observer.predicted(
            BatchReport(len(queries), seconds, unknown, tally, CacheReport.of(self.predictor.cache))
        )
        return answers

    @staticmethod
    def _started(part: Any) -> Any:
        if part is None:
            raise RuntimeError("an inline engine runs on its caller's thread: use run_predict_next, run_generate")
        return part


def load(stored: bentoml.Model | str, config: EngineConfig, threads: TorchThreads) -> Predictor:
    """The model on its device, with its state cache and blocklist, warmed up, on the calling thread."""
    if isinstance(stored, str):
        stored = bentoml.models.get(stored)
    device = pick_device(config.device)
    return load_predictor(stored, device, config.precision, config.state_cache_mb, threads, config.blocklist)
