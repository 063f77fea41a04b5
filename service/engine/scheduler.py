"""Continuous (iteration-level) batching for generation, with admission by work.

Usage::

    scheduler = Scheduler(predictor, model_thread, SchedulerConfig(...), threads.for_generate)
    model_thread.submit(scheduler.calibrate).result()   # measure the decode rate once
    generations = await scheduler.generate(requests)     # whole answers, in request order
    job = scheduler.submit([request], stream=True)       # raises Overloaded; see service.http.streaming
    async for row, token in job.tokens(): ...

The model thread drives the engine one iteration at a time (``_step``), each
step queued on the model thread by the one before it while work remains:

1. rows whose request was cancelled (it timed out, its client left) leave;
2. queued rows join in arrival order, as the ``BatchingPolicy`` allows, while
   fewer than ``max_rows`` run; their prompts are prefilled, from the state
   cache where it can;
3. one token is chosen for every running row, in one batched model call,
   and rows that finished leave at once.

Each step's ``StepReport`` is handed to the event loop (``_deliver``), which
gives each token to its request: a stream's queue gets every token, and a
whole request is answered as soon as its last row finishes.

Invariants:

- A row draws one number per step from its own seeded generator, so a seed
  gives the same tokens alone, in any batch, or joining one mid-flight.
- At most one step is queued or running on the model thread, which runs
  /predict_next batches too, in arrival order: neither starves the other.
- ``outstanding_tokens`` is the sum of ``Row.tokens_left`` over queued and
  running rows. A request that would take it past what the measured decode
  rate finishes within the timeout is refused at once (``Overloaded``: 429
  and Retry-After); queued rows that can no longer finish in time are
  refused from the queue (``Shed``, ``service.engine.shedding``).

``docs/architecture.md`` tells why it is built so; ``docs/benchmarks.md``
has the figures.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from service.engine.inference import PROBE, DecodeBatch, Predictor
from service.engine.reports import CacheReport, Observer, StepSummary, TokenTally
from service.engine.request import Job, Row
from service.engine.shedding import SHED_EVERY_S, Late, late_rows
from service.engine.types import BatchingPolicy, Generation, GenerationRequest, Overloaded, Shed, TokenLogprob

LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform == "linux" else None
# Share of the timeout that admitted work may fill at the measured rate. The rest is room for
# prefill, /predict_next, and a burst decoding slower than the saturated run measured
# (docs/benchmarks.md, overload): a fixed share cannot cover every such drop, shedding covers the rest.
HEADROOM = 0.7
RATE_SMOOTHING = 0.05  # weight of each new saturated step in the decode-rate average
# Shedding judges by a slower average (some 200 saturated steps, seconds of decoding): the first
# seconds of a burst dip the rate, and shedding on the dip refused requests that would have finished.
STEADY_RATE_SMOOTHING = 0.005
IDLE_TRIM_S = 2.0  # idle seconds before the engine hands free heap memory back


def release_free_memory() -> None:
    """Hand free memory back to the system; called when the engine goes idle.

    A burst of connections leaves garbage in reference cycles (asyncio
    transports and their protocols) that only a full collection frees, and an
    idle server allocates too little to trigger one; then glibc keeps the
    freed pages of its heaps (each thread has its own) for reuse. It runs after
    ``IDLE_TRIM_S`` without work, so light traffic, which leaves the engine
    idle after every request, never waits behind it.
    """
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)


def smoothed(average: float | None, sample: float, weight: float) -> float:
    """An exponential moving average: ``sample`` moves ``average`` by ``weight`` of the gap."""
    return sample if average is None else average + weight * (sample - average)


@dataclass(frozen=True)
class SchedulerConfig:
    policy: BatchingPolicy = BatchingPolicy.CONTINUOUS
    max_rows: int = 128  # rows decoded together at most
    timeout_s: float = 60.0  # the request timeout: admitted work should finish within it
    max_queued_tokens: int = 0  # bound on outstanding tokens; 0 derives it from the measured rate


@dataclass
class StepReport:
    """What one step did, handed from the model thread to the event loop."""

    emitted: list[tuple[Row, int | None]] = field(default_factory=list)  # each decoded row and its token
    # The rows that finished in this step, taken on the model thread: by the time the loop reads
    # the report, later steps may have run, and a row's finish_reason may be that of a later step.
    finished: list[Row] = field(default_factory=list)
    left: list[Row] = field(default_factory=list)  # cancelled rows that left without finishing
    shed: list[Late] = field(default_factory=list)  # queued rows too late to finish: refuse their jobs
    joined: list[Row] = field(default_factory=list)  # rows prefilled in this step
    failed: list[Row] = field(default_factory=list)  # the step raised ``error``: these rows fail with it
    error: Exception | None = None
    rows: int = 0  # rows decoded in this step
    running: int = 0  # rows running after it
    queued: int = 0  # rows waiting after it
    seconds: float = 0.0  # on the model thread
    tally: TokenTally = field(default_factory=TokenTally)  # prompt tokens read and run in this step
    cache: CacheReport | None = None  # the state cache's counts during this step
    last: bool = False  # no work was left: the engine went idle after this step


class Scheduler:
    """The generation engine's loop: admits requests, steps their rows on the model thread, delivers tokens."""

    def __init__(
        self,
        predictor: Predictor,
        executor: Executor,
        config: SchedulerConfig,
        threads_for: Callable[[int], None] = lambda rows: None,
        observer: Observer | None = None,
    ) -> None:
        self.predictor = predictor
        self.observer = observer or Observer()
        self.executor = executor
        self.config = config
        self.threads_for = threads_for  # sets torch's threads for a step of that many rows
        self.waiting: deque[Row] = deque()  # appended on the event loop, popped on the model thread
        self.batch: DecodeBatch | None = None  # the running rows; the model thread's alone
        self.outstanding_tokens = 0  # max_new_tokens not yet generated, over queued and running rows
        self.rate: float | None = None  # tokens/s with every slot taken
        self.steady_rate: float | None = None  # the same, averaged over longer: what shedding trusts
        self._joining: list[Row] = []  # rows being prefilled right now
        self._last_shed_scan = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # guards _stepping: a step queued or running on the model thread
        self._stepping = False
        self._previous: tuple[float, int] | None = None  # start time and rows of the last step

    # -- on the event loop ---------------------------------------------------------------------

    def submit(self, inputs: list[GenerationRequest], stream: bool = False) -> Job:
        """Queue a request's inputs, or raise ``Overloaded`` if they could not finish in time."""
        asked = sum(item.max_new_tokens for item in inputs)
        bound = self.token_bound()
        if self.outstanding_tokens and self.outstanding_tokens + asked > bound:
            excess = self.outstanding_tokens + asked - bound
            self.observer.rejected()
            raise Overloaded(self.outstanding_tokens, asked, bound, max(1, math.ceil(excess / (self.rate or 1.0))))
        # A stream's 200 goes out before its first token, so only whole answers are shed from the queue.
        deadline = None if stream else time.monotonic() + self.config.timeout_s
        job = Job([self.predictor.new_row(item) for item in inputs], stream, deadline)
        self.outstanding_tokens += asked
        self.waiting.extend(job.rows)
        self._loop = asyncio.get_running_loop()
        with self._lock:
            idle, self._stepping = not self._stepping, True
        if idle:
            self._previous = None
            self.executor.submit(self._run_step)
        return job

    async def generate(self, inputs: list[GenerationRequest]) -> list[Generation]:
        """Whole answers, once every row has finished; a cancelled caller frees its rows."""
        job = self.submit(inputs)
        try:
            await job.done
        finally:
            job.cancel()  # no-op for finished rows
        return [self.predictor.output(row) for row in job.rows]

    async def score(self, rows: list[list[int]], top: int) -> list[list[TokenLogprob | None]]:
        """``Predictor.score`` on the model thread, between two steps of the running rows."""
        return await asyncio.wrap_future(self.executor.submit(self._score, rows, top))

    def token_bound(self) -> int:
        """Most outstanding tokens admitted: set, or what the measured rate finishes within the timeout."""
        if self.config.max_queued_tokens:
            return self.config.max_queued_tokens
        if self.rate is None:
            return 2**62
        return max(1, int(self.rate * self.config.timeout_s * HEADROOM))

    def _trim_if_idle(self) -> None:
        if not self._stepping:
            self.executor.submit(release_free_memory)

    def _deliver(self, report: StepReport) -> None:
        """Hand a step's tokens to their requests (on the event loop, in step order)."""
        if report.error is not None:
            self._fail(report.failed, report.error)
        shed = 0
        for late in report.shed:  # before their rows leave, which would answer the job as finished
            job = late.row.job
            if job is not None and not job.done.done():
                waited = time.monotonic() - job.submitted
                job.finish(Shed(waited, self.config.timeout_s, max(1, math.ceil(late.retry_after_s))))
                shed += 1
        generated = 0
        finished = {id(row) for row in report.finished}
        for row, token in report.emitted:
            job = row.job
            if token is not None:
                generated += 1
                self.outstanding_tokens -= 1
            if job.queue is not None:
                job.queue.put_nowait((row, token))
            if id(row) in finished:
                self._leave(row)
        for row in report.left:
            self._leave(row)
        self.observer.stepped(
            StepSummary(
                rows=report.rows,
                seconds=report.seconds,
                tally=report.tally,
                unknown=sum(row.prompt.unknown for row in report.joined),
                generated=generated,
                cancelled=len(report.left),
                shed=shed,
                running=report.running,
                queued=report.queued,
                outstanding_tokens=self.outstanding_tokens,
                cache=report.cache,
            )
        )
        if report.last:
            asyncio.get_running_loop().call_later(IDLE_TRIM_S, self._trim_if_idle)

    def _leave(self, row: Row, error: Exception | None = None) -> None:
        """A row is done with: its unfinished tokens leave the admission count, and its request is
        answered once its last row is done (at once, with ``error``, when a step failed)."""
        job, row.job = row.job, None  # no Job <-> Row cycle left for the garbage collector
        self.outstanding_tokens -= row.tokens_left
        job.unfinished -= 1
        if error is not None:
            job.cancel()  # its other rows, if any, leave at the next step
            job.finish(error)
        elif job.unfinished == 0:
            job.finish()

    def _fail(self, rows: list[Row], error: Exception) -> None:
        """A step raised: answer the requests of its failed rows with the error."""
        for row in rows:
            self._leave(row, error)

    # -- on the model thread -------------------------------------------------------------------

    def _run_step(self) -> None:
        """One step, its report to the event loop, and the next step queued while work remains."""
        started = time.perf_counter()
        previous = self._previous
        if previous and previous[1] >= self.config.max_rows:  # saturated: the rate at full load
            sample = previous[1] / (started - previous[0])
            self.rate = smoothed(self.rate, sample, RATE_SMOOTHING)
            self.steady_rate = smoothed(self.steady_rate, sample, STEADY_RATE_SMOOTHING)
        try:
            report = self._step()
        except Exception as error:  # fail the rows it was admitting if their prefill failed, else the running ones
            if self._joining:
                failed, self._joining = self._joining, []
            else:
                failed = self.batch.rows if self.batch else []
                self.batch = None
            report = StepReport(failed=failed, error=error)
        self._previous = None if report.error else (started, report.rows)  # no rate sample across a failure
        report.running = len(self.batch.rows) if self.batch is not None else 0
        with self._lock:
            more = bool(self.waiting) or self.batch is not None
            self._stepping = more
        report.queued, report.last = len(self.waiting), not more
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, report)
        if more:
            self.executor.submit(self._run_step)

    def _step(self) -> StepReport:
        """One iteration: drop cancelled rows, admit queued ones, decode one token for each."""
        started = time.perf_counter()
        report = StepReport()
        batch = self.batch
        if batch is not None:
            report.left = [row for row in batch.rows if row.cancelled]
            if report.left:
                batch.keep([i for i, row in enumerate(batch.rows) if not row.cancelled])
        report.joined = self._admit(report.left)
        report.shed = self._shed_late()
        if report.joined:
            self.threads_for(len(report.joined))
            self._joining = report.joined  # failed with the step if their prefill fails
            joining = self.predictor.start(report.joined)
            self._joining = []
            if batch is None or not batch.rows:
                batch = joining
            else:
                batch.extend(joining)
        self.batch = batch if batch is not None and batch.rows else None
        if self.batch is not None:
            report.rows = len(self.batch.rows)
            self.threads_for(report.rows)
            report.emitted = self.predictor.step(self.batch)
            report.finished = [row for row, _ in report.emitted if row.finish_reason is not None]
            if not self.batch.rows:
                self.batch = None
        report.cache = CacheReport.of(self.predictor.cache)
        report.tally = self.predictor.take_tally()
        report.seconds = time.perf_counter() - started
        return report

    def _shed_late(self) -> list[Late]:
        """Mark the queued rows that can no longer finish in time (and their jobs' other rows) cancelled."""
        now = time.monotonic()
        rate = self.steady_rate
        if not self.waiting or rate is None or now - self._last_shed_scan < SHED_EVERY_S:
            return []
        self._last_shed_scan = now
        running = self.batch.rows if self.batch is not None else []
        running_tokens = sum(row.tokens_left for row in running)
        step_s = self.config.max_rows / rate if self.config.policy is BatchingPolicy.CONTINUOUS else 0.0
        # list() copies the deque at once (the event loop may append to it meanwhile).
        late = late_rows(list(self.waiting), running_tokens, rate, step_s, now)
        for item in late:
            for row in item.row.job.rows:
                row.cancelled = True  # queued ones leave at admission, running ones at the next step
        return late

    def _admit(self, left: list[Row]) -> list[Row]:
        """Pop the queued rows that join now, by policy; cancelled ones go to ``left``."""
        running = len(self.batch.rows) if self.batch is not None else 0
        if self.config.policy is not BatchingPolicy.CONTINUOUS and running:
            return []
        joining: list[Row] = []
        while self.waiting and running + len(joining) < self.config.max_rows:
            row = self.waiting[0]
            if row.cancelled:
                left.append(self.waiting.popleft())
                continue
            if self.config.policy is BatchingPolicy.OFF and joining and row.job is not joining[0].job:
                break
            joining.append(self.waiting.popleft())
        return joining

    def _score(self, rows: list[list[int]], top: int) -> list[list[TokenLogprob | None]]:
        self.threads_for(self.config.max_rows)  # a prompt's positions are scored as one large batch
        scored = self.predictor.score(rows, top)
        self.observer.scored(self.predictor.take_tally())
        return scored

    def calibrate(self, seconds: float = 0.3) -> None:
        """Measure tokens/s with every slot taken; call it once on the model thread, before serving."""
        batch = self.predictor.start([self.predictor.new_row(PROBE) for _ in range(self.config.max_rows)])
        self.threads_for(self.config.max_rows)
        self.predictor.step(batch)  # the first step pays for compiling
        steps, timed = 0, 0.0
        while steps < 3 or timed < seconds:
            if len(batch.rows) < self.config.max_rows:  # a row ended its text: start a full batch again
                batch = self.predictor.start([self.predictor.new_row(PROBE) for _ in range(self.config.max_rows)])
            for row in batch.rows:
                row.ids.clear()  # never reach max_new_tokens
            started = time.perf_counter()
            self.predictor.step(batch)
            timed += time.perf_counter() - started
            steps += 1
        self.rate = self.steady_rate = self.config.max_rows * steps / timed
        if self.predictor.cache is not None:
            self.predictor.cache.clear()
        self.predictor.take_tally()  # the probe's tokens are no client's
