"""A generation request inside the engine: its rows, the channel their tokens reach it by, and its refusals.

Usage::

    job = Job(rows, stream=False, deadline=time.monotonic() + timeout_s)
    await job.done                          # whole answers: every row ended
    async for row, token in job.tokens():   # a stream: each token as it comes
    job.cancel()                            # a timeout or a disconnect: the rows leave at the next step

Like a queued entry of TGI's router, each job carries its own response
channel, so a streaming and a whole request are the same thing to the
scheduler with a different consumer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.engine.inference import Row


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


class Job:
    """One request's rows, and the channel their tokens reach it by."""

    def __init__(self, rows: list[Row], stream: bool, deadline: float | None = None) -> None:
        self.rows = rows
        self.submitted = time.monotonic()
        self.deadline = deadline  # time.monotonic() by which it must finish; None: never shed
        self.unfinished = len(rows)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue: asyncio.Queue[tuple[Row, int | None] | None] | None = asyncio.Queue() if stream else None
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
