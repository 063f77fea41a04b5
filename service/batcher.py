"""Greedy micro-batching: run whatever is queued as soon as the model is free.

While a batch runs, new requests queue; when it finishes, everything queued
(up to ``max_batch_size`` inputs, whole requests only) becomes the next batch.
A lone request therefore never waits for company, and under load batches
grow by themselves. BentoML's adaptive batching instead waits for a batch to
fill based on the recent average wait, which after a burst keeps adding tens
of milliseconds to light traffic (see the README's benchmark).

One executor thread per worker runs every batch of every endpoint, so the
model never runs twice at once and torch's threads are not oversubscribed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self, run_batch: Callable[[list[In]], list[Out]], executor: Executor, max_batch_size: int, merge: bool = True
    ) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.merge = merge  # False: every request is its own batch (batching off)
        self._pending: deque[tuple[list[In], asyncio.Future[list[Out]]]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, items: list[In]) -> list[Out]:
        """Queue one request's inputs; returns their outputs in order."""
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

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
