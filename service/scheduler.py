"""Continuous (iteration-level) batching for /generate, with admission by work.

Usage::

    scheduler = Scheduler(predictor, model_thread, SchedulerConfig(...), threads_for)
    model_thread.submit(scheduler.calibrate).result()   # measure the decode rate once
    outputs = await scheduler.generate(inputs)           # whole answers, in input order
    job = scheduler.submit([item], stream=True)          # raises Overloaded; see service.streaming
    async for row, token in job.tokens(): ...

The model thread drives the engine one iteration at a time (``_step``),
each one queued on the model thread by the one before it while work
remains, so the next step never waits for a busy event loop to come round:

1. rows whose request was cancelled (it timed out, its client left) leave;
2. queued rows join in arrival order while there is room
   (``NEXTWORD_MAX_BATCH_SIZE`` running rows); their prompts are prefilled
   (``models.scoring``: no state sees padding), from the state cache where it can;
3. one token is chosen for every running row, in one batched model call,
   and rows that finished leave at once.

Each step's report is handed to the event loop (``_deliver``), where each
token goes to its request: a streaming request's queue gets every token,
and a whole request is answered as soon as its last row finishes. (Short
requests keep the loop busy, and a step that waited for it left the model
thread idle: on a mixed load of 5- and 200-token requests, chaining the
steps gave 1.04x the tokens/s, median of 4 interleaved runs, 0.99-1.20.)
A row never waits for rows that came before it. A row's sampling draws one
number per step from its own seeded generator, so a seed gives the same
tokens alone, in any batch, or joining one mid-flight.

Policies (``NEXTWORD_GENERATE_BATCHING``): ``continuous`` admits at every
step; ``request`` admits only when nothing is running, so a batch runs until
its last row ends (request-level batching, kept to compare with);
``off`` runs one request at a time.

Fairness with /predict_next: both hand their work to the same one-thread
executor, which runs it in arrival order, and the driver submits one step
at a time, the next one queued when the last ends. So between two decode
steps at most one /predict_next batch runs, and a /predict_next batch
waits for at most one decode step: neither can starve the other.

Admission: every request's ``max_new_tokens`` count as work until its rows
leave. A request that would take the outstanding work past what the
measured decode rate finishes within the request timeout
(``rate * timeout * HEADROOM``, or ``NEXTWORD_MAX_QUEUED_TOKENS``) is refused
at once with ``Overloaded`` (429 and ``Retry-After``), rather than queued to
time out. The rate is measured at start-up with a full batch and then
follows the steps that run with every slot taken. A burst can still decode
slower than that: queued rows that could no longer finish by their
deadline at the rate of the last seconds are then refused the same way, from the
queue, before they take a slot (``service.shedding``).
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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from service import metrics
from service.inference import DecodeBatch, Predictor, Row
from service.schemas import GenerateInput, GenerateOutput
from service.shedding import SHED_EVERY_S, Late, late_rows

POLICIES = ("continuous", "request", "off")
LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform == "linux" else None
# Share of the timeout that admitted work may fill at the measured rate. The rest is room for
# prefill, /predict_next, and a burst decoding slower than the saturated run measured: bursts of
# 2,000 requests on the 2-core machine decoded at 0.62 to 0.95 of it (README, generation engine),
# and at 0.8 a 0.73 one timed out its last wave. A fixed share cannot cover every such drop.
HEADROOM = 0.7
RATE_SMOOTHING = 0.05  # weight of each new saturated step in the decode-rate average
# Shedding judges by a slower average (some 200 saturated steps, seconds of decoding): the first
# seconds of a burst of 2,000 connections dip the rate, and shedding on the dip refused 4 of 728
# requests in a run where every other one finished 14 s before the timeout.
STEADY_RATE_SMOOTHING = 0.005
IDLE_TRIM_S = 2.0  # idle seconds before the engine hands free heap memory back


def release_free_memory() -> None:
    """Hand free memory back to the system; called when the engine goes idle.

    A burst of connections leaves garbage in reference cycles (asyncio
    transports and their protocols) that only a full collection frees, and an
    idle server allocates too little to trigger one; then glibc keeps the
    freed pages of its heaps (each thread has its own) for reuse. Measured
    after a burst of 2,000 connections: the worker went from 446 to 435 MB
    with the collection, and the trim had taken it from 430 to 377 MB after
    bursts of 1,000 requests. It runs after ``IDLE_TRIM_S`` without work, so
    light traffic, which leaves the engine idle after every request, never
    waits behind it.
    """
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)


def smoothed(average: float | None, sample: float, weight: float) -> float:
    """An exponential moving average: ``sample`` moves ``average`` by ``weight`` of the gap."""
    return sample if average is None else average + weight * (sample - average)


class Overloaded(Exception):
    """More work is queued than can finish within the timeout; try again after ``retry_after_s``."""

    def __init__(self, outstanding: int, asked: int, bound: int, retry_after_s: int) -> None:
        super().__init__(
            f"the server is at capacity: {outstanding} tokens are queued or running, and {asked} more "
            f"would pass the {bound} it can finish within the request timeout; retry after {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class Shed(Overloaded):
    """Admitted, but the queue moved too slowly for it to finish by its deadline; refused from the queue."""

    def __init__(self, waited_s: float, timeout_s: float, retry_after_s: int) -> None:
        Exception.__init__(
            self,
            f"the server is at capacity: after {waited_s:.1f} s in the queue this request could no longer "
            f"finish within the {timeout_s:g} s request timeout at the recent decode rate; "
            f"retry after {retry_after_s} s",
        )
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SchedulerConfig:
    policy: str = "continuous"  # one of POLICIES
    max_rows: int = 128  # rows decoded together at most
    timeout_s: float = 60.0  # the request timeout: admitted work should finish within it
    max_queued_tokens: int = 0  # bound on outstanding tokens; 0 derives it from the measured rate


class Job:
    """One request's rows, and the channel their tokens reach it by."""

    def __init__(self, rows: list[Row], stream: bool, deadline: float | None = None) -> None:
        self.rows = rows
        self.submitted = time.monotonic()
        self.deadline = deadline  # time.monotonic() by which it must finish; None: never shed
        self.unfinished = len(rows)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue: asyncio.Queue[tuple[Row, int | None]] | None = asyncio.Queue() if stream else None
        for row in rows:
            row.job = self

    def cancel(self) -> None:
        """Free the rows at the next step (a timeout, a disconnect)."""
        for row in self.rows:
            row.cancelled = True

    async def tokens(self) -> AsyncIterator[tuple[Row, int | None]]:
        """A streaming job's (row, token id) pairs as they come (None: the row ended the text)."""
        assert self.queue is not None, "tokens() is for jobs submitted with stream=True"
        while self.unfinished or not self.queue.empty():
            item = await self.queue.get()
            if item is None:  # the engine failed
                raise self.done.exception()
            yield item

    def finish(self, error: BaseException | None = None) -> None:
        """Answer the request: its rows all ended, or ``error`` ended them."""
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
            return
        self.done.set_exception(error)
        self.done.exception()  # retrieved: a stream reports it, and nobody else may await it
        if self.queue is not None:
            self.queue.put_nowait(None)


@dataclass
class _StepReport:
    emitted: list[tuple[Row, int | None]] = field(default_factory=list)  # each decoded row and its token
    # The rows that finished in this step, taken on the model thread: by the time the loop reads
    # the report, later steps may have run, and a row's finish_reason may be that of a later step.
    finished: list[Row] = field(default_factory=list)
    left: list[Row] = field(default_factory=list)  # cancelled rows that left without finishing
    shed: list[Late] = field(default_factory=list)  # queued rows too late to finish: refuse their jobs
    joined: list[Row] = field(default_factory=list)
    failed: list[Row] = field(default_factory=list)  # the step raised ``error``: these rows fail with it
    error: Exception | None = None
    rows: int = 0  # rows decoded in this step
    running: int = 0  # rows running after it
    queued: int = 0  # rows waiting after it
    seconds: float = 0.0  # on the model thread
    last: bool = False  # no work was left: the engine went idle after this step


class Scheduler:
    def __init__(
        self,
        predictor: Predictor,
        executor: Executor,
        config: SchedulerConfig,
        threads_for: Callable[[int], None] = lambda rows: None,
    ) -> None:
        if config.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {config.policy!r}")
        self.predictor = predictor
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

    def submit(self, inputs: list[GenerateInput], stream: bool = False) -> Job:
        """Queue a request's inputs, or raise ``Overloaded`` if they could not finish in time."""
        asked = sum(item.max_new_tokens for item in inputs)
        bound = self.token_bound()
        if self.outstanding_tokens and self.outstanding_tokens + asked > bound:
            excess = self.outstanding_tokens + asked - bound
            metrics.GENERATE_REJECTED.inc()
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

    async def generate(self, inputs: list[GenerateInput]) -> list[GenerateOutput]:
        """Whole answers, once every row has finished; a cancelled caller frees its rows."""
        job = self.submit(inputs)
        try:
            await job.done
        finally:
            job.cancel()  # no-op for finished rows
        return [self.predictor.output(row) for row in job.rows]

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

    def _deliver(self, report: _StepReport) -> None:
        """Hand a step's tokens to their requests (on the event loop, in step order)."""
        if report.error is not None:
            self._fail(report.failed, report.error)
        for late in report.shed:  # before their rows leave, which would answer the job as finished
            job = late.row.job
            if job is not None and not job.done.done():
                waited = time.monotonic() - job.submitted
                job.finish(Shed(waited, self.config.timeout_s, max(1, math.ceil(late.retry_after_s))))
                metrics.GENERATE_SHED.inc()
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
            metrics.GENERATE_CANCELLED.inc()
        if report.joined:
            metrics.TOKENS_PROCESSED.labels("generate").inc(sum(row.prompt.tokens for row in report.joined))
            metrics.UNKNOWN_TOKENS.labels("generate").inc(sum(row.prompt.unknown for row in report.joined))
        if report.rows:
            metrics.BATCH_SIZE.labels("generate").observe(report.rows)
            metrics.INFERENCE_SECONDS.labels("generate").observe(report.seconds)
        metrics.TOKENS_GENERATED.inc(generated)
        metrics.GENERATE_ROWS.labels("running").set(report.running)
        metrics.GENERATE_ROWS.labels("queued").set(report.queued)
        metrics.OUTSTANDING_TOKENS.set(self.outstanding_tokens)
        if report.last:
            asyncio.get_running_loop().call_later(IDLE_TRIM_S, self._trim_if_idle)

    def _leave(self, row: Row) -> None:
        job, row.job = row.job, None  # no Job <-> Row cycle left for the garbage collector
        self.outstanding_tokens -= row.input.max_new_tokens - len(row.ids)
        job.unfinished -= 1
        if job.unfinished == 0:
            job.finish()

    def _fail(self, rows: list[Row], error: Exception) -> None:
        """A step raised: answer the requests of its failed rows with the error."""
        for row in rows:
            job, row.job = row.job, None
            self.outstanding_tokens -= row.input.max_new_tokens - len(row.ids)
            job.unfinished -= 1
            job.cancel()  # its other rows, if any, leave at the next step
            job.finish(error)

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
            report = _StepReport(failed=failed, error=error)
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

    def _step(self) -> _StepReport:
        """One iteration: drop cancelled rows, admit queued ones, decode one token for each."""
        started = time.perf_counter()
        report = _StepReport()
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
        metrics.record_cache(self.predictor.cache)
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
        running_tokens = sum(row.input.max_new_tokens - len(row.ids) for row in running)
        step_s = self.config.max_rows / rate if self.config.policy == "continuous" else 0.0
        # list() copies the deque at once (the event loop may append to it meanwhile).
        late = late_rows(list(self.waiting), running_tokens, rate, step_s, now)
        for item in late:
            for row in item.row.job.rows:
                row.cancelled = True  # queued ones leave at admission, running ones at the next step
        return late

    def _admit(self, left: list[Row]) -> list[Row]:
        """Pop the queued rows that join now, by policy; cancelled ones go to ``left``."""
        running = len(self.batch.rows) if self.batch is not None else 0
        if self.config.policy != "continuous" and running:
            return []
        joining: list[Row] = []
        while self.waiting and running + len(joining) < self.config.max_rows:
            row = self.waiting[0]
            if row.cancelled:
                left.append(self.waiting.popleft())
                continue
            if self.config.policy == "off" and joining and row.job is not joining[0].job:
                break
            joining.append(self.waiting.popleft())
        return joining

    def calibrate(self, seconds: float = 0.3) -> None:
        """Measure tokens/s with every slot taken; call it once on the model thread, before serving."""
        probe = GenerateInput(prompt="the", max_new_tokens=2, seed=0)
        batch = self.predictor.start([self.predictor.new_row(probe) for _ in range(self.config.max_rows)])
        self.threads_for(self.config.max_rows)
        self.predictor.step(batch)  # the first step pays for compiling
        steps, timed = 0, 0.0
        while steps < 3 or timed < seconds:
            if len(batch.rows) < self.config.max_rows:  # a row ended its text: start a full batch again
                batch = self.predictor.start([self.predictor.new_row(probe) for _ in range(self.config.max_rows)])
            for row in batch.rows:
                row.ids.clear()  # never reach max_new_tokens
            started = time.perf_counter()
            self.predictor.step(batch)
            timed += time.perf_counter() - started
            steps += 1
        self.rate = self.steady_rate = self.config.max_rows * steps / timed
        if self.predictor.cache is not None:
            self.predictor.cache.clear()
