"""Greedy micro-batching: run whatever is queued as soon as the model is free.

While a batch runs, new requests queue; when it finishes, everything queued
(up to ``max_batch_size`` inputs, whole requests only) becomes the next batch.
A lone request therefore never waits for company, and under load batches
grow by themselves. BentoML's adaptive batching instead waits for a batch to
fill based on the recent average wait, which after a burst keeps adding tens
of milliseconds to light traffic (docs/benchmarks.md).

One executor thread per worker runs every batch of every endpoint, so the
model never runs twice at once and torch's threads are not oversubscribed.
The exception: a request of at most ``run_here_up_to`` inputs that finds that
thread idle and no other request waiting runs at once on the event loop's own
thread. Handing it to a sleeping thread and its answer back to a sleeping
loop cost more than the model (docs/benchmarks.md has the figures). Under
load the model thread is never idle, so batches form as before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from service.engine.model_thread import ModelThread

# The inputs a lone request may have to run on the event loop's thread: one text,
# as a typist sends. Its batch is small, so it runs on one torch thread
# (``service.service.use_threads_for``): the loop's thread never starts a team of
# OpenMP threads beside the model thread's.
RUN_HERE_UP_TO = 1

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        run_batch: Callable[[list[In]], list[Out]],
        executor: ModelThread,
        max_batch_size: int,
        merge: bool = True,
        run_here_up_to: int = 0,
    ) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.merge = merge  # False: every request is its own batch (batching off)
        self.run_here_up_to = run_here_up_to  # inputs a lone request may have to run on the loop; 0: never
        self._pending: deque[tuple[list[In], asyncio.Future[list[Out]]]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, items: list[In]) -> list[Out]:
        """Queue one request's inputs; returns their outputs in order."""
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if len(items) <= self.run_here_up_to and self._idle():
            try:
                await asyncio.sleep(0)  # requests read in the same turn of the loop queue up meanwhile, and batch
            except asyncio.CancelledError:
                future.cancel()  # the drainer skips it
                raise
            if len(self._pending) == 1 and self._pending[0][1] is future and self._idle():
                self._pending.popleft()
                return self.run_batch(items)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    def _idle(self) -> bool:
        """No batch running or about to, on either thread."""
        return (self._drainer is None or self._drainer.done()) and self.executor.idle

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while batch := self._take():
            inputs = [item for items, _ in batch for item in items]
            try:
                outputs = await loop.run_in_executor(self.executor, self.run_batch, inputs)
            except Exception as error:  # the whole batch failed: tell each waiting request
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for items, future in batch:
                if not future.done():  # a request that timed out is no longer waiting
                    future.set_result(outputs[start : start + len(items)])
                start += len(items)

    def _take(self) -> list[tuple[list[In], asyncio.Future[list[Out]]]]:
        """Pop the next batch: the oldest live request, plus followers that fit."""
        batch: list[tuple[list[In], asyncio.Future[list[Out]]]] = []
        size = 0
        while self._pending:
            items, future = self._pending[0]
            if future.done():  # cancelled while queued
                self._pending.popleft()
                continue
            if batch and (not self.merge or size + len(items) > self.max_batch_size):
                break
            batch.append(self._pending.popleft())
            size += len(items)
        return batch
