"""A generation request's Job alone: its rows, its stream's channel, cancellation and failure."""

from __future__ import annotations

import asyncio

import pytest

from service.engine.request import Job, Row
from service.engine.types import GenerationRequest, Overloaded, Shed


def rows(n: int) -> list[Row]:
    return [
        Row(input=GenerationRequest("the", max_new_tokens=3), prompt=None, stops=[], generator=None) for _ in range(n)
    ]


def test_a_job_owns_its_rows_and_cancel_marks_every_one() -> None:
    async def scenario() -> None:
        job = Job(rows(3), stream=False)
        assert all(row.job is job for row in job.rows) and job.unfinished == 3
        job.cancel()
        assert all(row.cancelled for row in job.rows)
        assert not job.done.done()  # cancelling frees rows at the next step; the scheduler answers the job

    asyncio.run(scenario())


def test_a_stream_yields_its_tokens_in_order_until_its_rows_finish() -> None:
    async def scenario() -> list[int | None]:
        job = Job(rows(1), stream=True)
        (row,) = job.rows
        for token in (5, 6, None):
            job.queue.put_nowait((row, token))
        job.unfinished = 0  # the scheduler's bookkeeping once the row has left
        job.finish()
        return [token async for _, token in job.tokens()]

    assert asyncio.run(scenario()) == [5, 6, None]


def test_a_failed_job_raises_in_its_stream_and_its_waiter() -> None:
    async def scenario() -> None:
        job = Job(rows(1), stream=True)
        job.finish(RuntimeError("the device failed"))
        job.finish()  # a second answer changes nothing
        with pytest.raises(RuntimeError, match="the device failed"):
            async for _ in job.tokens():
                pass
        with pytest.raises(RuntimeError, match="the device failed"):
            await job.done

    asyncio.run(scenario())


def test_a_whole_request_has_no_stream() -> None:
    async def scenario() -> None:
        job = Job(rows(2), stream=False, deadline=12.5)
        assert job.queue is None and job.deadline == 12.5
        with pytest.raises(AssertionError):
            async for _ in job.tokens():
                pass

    asyncio.run(scenario())


def test_refusals_say_when_to_retry() -> None:
    overloaded = Overloaded(outstanding=900, asked=200, bound=1000, retry_after_s=3)
    assert overloaded.retry_after_s == 3 and "900 tokens" in str(overloaded) and "1000" in str(overloaded)
    shed = Shed(waited_s=4.25, timeout_s=60, retry_after_s=2)
    assert isinstance(shed, Overloaded) and shed.retry_after_s == 2 and "4.2 s" in str(shed)
