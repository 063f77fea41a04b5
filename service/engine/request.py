"""A request inside the engine: its text as ids, its rows, and the channel their tokens reach it by.

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
from dataclasses import dataclass, field

import torch

from service.engine.types import FinishReason, GenerationRequest, TokenLogprob


@dataclass
class Encoded:
    """A text as ids, with the line break ``<eos>`` first."""

    ids: list[int]
    tokens: int  # without the leading <eos>
    unknown: int


@dataclass(eq=False)
class Row:
    """One generation request while it is queued or being decoded."""

    input: GenerationRequest
    prompt: Encoded
    stops: list[list[int]]  # each stop sequence as ids
    generator: torch.Generator  # the row's own seeded draws
    ids: list[int] = field(default_factory=list)  # generated so far
    finish_reason: FinishReason | None = None  # set when the row ends
    stop_tokens: int = 0  # with finish_reason STOP: the length of the stop sequence it generated
    logprobs: list[TokenLogprob] = field(default_factory=list)  # per generated token, when the input asks
    cancelled: bool = False  # set from outside (a timeout, a disconnect): leave at the next step
    job: Job | None = None  # the scheduler's handle on the request this row belongs to
    truncated: bool = False  # the prompt's tokens before its last ``truncate`` ones were left out

    @property
    def tokens_left(self) -> int:
        """Tokens it may still generate: the work it holds in the scheduler's admission count."""
        return self.input.max_new_tokens - len(self.ids)


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
