"""Greedy micro-batching with a real executor thread and asyncio."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.batcher import MicroBatcher


class Recorder:
    """A batch function that records batch sizes and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.started.set()
        self.gate.wait(5)
        if -1 in items:
            raise ValueError("bad item")
        self.batches.append(list(items))
        return [item * 10 for item in items]


async def held_then_queued(merge: bool, max_batch_size: int = 4) -> tuple[Recorder, list]:
    """Hold a first batch running while five more requests queue, then release."""
    recorder = Recorder()
    batcher = MicroBatcher(recorder, ThreadPoolExecutor(1), max_batch_size, merge)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit([0]))
    await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait, 5)
    rest = [asyncio.create_task(batcher.submit([i, i + 100])) for i in range(1, 6)]
    await asyncio.sleep(0.05)
    recorder.gate.set()
    return recorder, await asyncio.gather(first, *rest)


def test_lone_request_runs_at_once() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, ThreadPoolExecutor(1), 8)
    assert asyncio.run(batcher.submit([3, 4])) == [30, 40]
    assert recorder.batches == [[3, 4]]


def test_queued_requests_merge_in_order_up_to_the_limit() -> None:
    recorder, results = asyncio.run(held_then_queued(merge=True))
    assert results == [[0], *[[i * 10, (i + 100) * 10] for i in range(1, 6)]]
    assert [len(b) for b in recorder.batches] == [1, 4, 4, 2]  # whole requests only, at most 4 inputs
    assert recorder.batches[1] == [1, 101, 2, 102]


def test_merge_off_runs_each_request_alone() -> None:
    recorder, results = asyncio.run(held_then_queued(merge=False))
    assert [len(b) for b in recorder.batches] == [1, 2, 2, 2, 2, 2]
    assert results[3] == [30, 1030]


def test_a_failing_batch_fails_its_requests_only() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = MicroBatcher(recorder, ThreadPoolExecutor(1), 8)
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit([-1])
        assert await batcher.submit([2]) == [20]

    asyncio.run(scenario())


def test_cancelled_requests_are_skipped() -> None:
    async def scenario() -> Recorder:
        recorder = Recorder()
        batcher = MicroBatcher(recorder, ThreadPoolExecutor(1), 8)
        recorder.gate.clear()
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.05)
        doomed = asyncio.create_task(batcher.submit([2]))
        kept = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        recorder.gate.set()
        assert await first == [10] and await kept == [30]
        return recorder

    assert asyncio.run(scenario()).batches == [[1], [3]]
