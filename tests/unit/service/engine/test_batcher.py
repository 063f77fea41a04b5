"""Greedy micro-batching with a real executor thread and asyncio.

Order is forced by events (a batch held on a gate) and by turns of the event
loop (``asyncio.sleep(0)``), never by sleeping for a while; ``GUARD_S`` only
fails a stuck test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.engine.batcher import MicroBatcher
from service.engine.model_thread import ModelThread

GUARD_S = 60.0


async def turns(n: int = 3) -> None:
    """Let every ready task run ``n`` times: a task that queues a request does so in its first turn."""
    for _ in range(n):
        await asyncio.sleep(0)


class Recorder:
    """A batch function that records batch sizes and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.started.set()
        assert self.gate.wait(GUARD_S), "the test never released the batch"
        if -1 in items:
            raise ValueError("bad item")
        self.batches.append(list(items))
        return [item * 10 for item in items]


async def held_then_queued(merge: bool, max_batch_size: int = 4) -> tuple[Recorder, list]:
    """Hold a first batch running while five more requests queue, then release."""
    recorder = Recorder()
    batcher = MicroBatcher(recorder, ModelThread(), max_batch_size, merge)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit([0]))
    await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait, GUARD_S)
    rest = [asyncio.create_task(batcher.submit([i, i + 100])) for i in range(1, 6)]
    await turns()
    assert len(batcher._pending) == 5  # all five queued behind the held batch
    recorder.gate.set()
    return recorder, await asyncio.gather(first, *rest)


def test_lone_request_runs_at_once() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, ModelThread(), 8)
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
        batcher = MicroBatcher(recorder, ModelThread(), 8)
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit([-1])
        assert await batcher.submit([2]) == [20]

    asyncio.run(scenario())


def test_cancelled_requests_are_skipped() -> None:
    async def scenario() -> Recorder:
        recorder = Recorder()
        batcher = MicroBatcher(recorder, ModelThread(), 8)
        recorder.gate.clear()
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait, GUARD_S)
        doomed = asyncio.create_task(batcher.submit([2]))
        kept = asyncio.create_task(batcher.submit([3]))
        await turns()
        doomed.cancel()
        recorder.gate.set()
        assert await first == [10] and await kept == [30]
        return recorder

    assert asyncio.run(scenario()).batches == [[1], [3]]


class ThreadRecorder(Recorder):
    """Also records the thread each batch ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.threads.append(threading.current_thread())
        return super().__call__(items)


def test_a_lone_small_request_runs_on_the_loops_thread_when_the_model_thread_is_idle() -> None:
    async def scenario() -> None:
        recorder, model_thread = ThreadRecorder(), ModelThread()
        batcher = MicroBatcher(recorder, model_thread, 8, run_here_up_to=1)
        assert await batcher.submit([3]) == [30]
        assert await batcher.submit([4, 5]) == [40, 50]  # more inputs than run_here_up_to: the model thread
        assert recorder.threads[0] is threading.current_thread()
        assert recorder.threads[1] is not threading.current_thread()
        assert model_thread.idle

    asyncio.run(scenario())


def test_requests_read_in_the_same_turn_still_batch_on_the_model_thread() -> None:
    async def scenario() -> None:
        recorder = ThreadRecorder()
        batcher = MicroBatcher(recorder, ModelThread(), 8, run_here_up_to=1)
        assert await asyncio.gather(batcher.submit([1]), batcher.submit([2]), batcher.submit([3])) == [[10], [20], [30]]
        assert recorder.batches == [[1, 2, 3]]
        assert recorder.threads[0] is not threading.current_thread()

    asyncio.run(scenario())


def test_a_lone_request_waits_for_a_busy_model_thread() -> None:
    async def scenario() -> None:
        recorder, model_thread = ThreadRecorder(), ModelThread()
        batcher = MicroBatcher(recorder, model_thread, 8, run_here_up_to=1)
        other_work = threading.Event()
        busy = model_thread.submit(other_work.wait, GUARD_S)  # the generation engine's step, say
        assert not model_thread.idle
        request = asyncio.create_task(batcher.submit([7]))
        await turns()  # on the loop's thread it would have run in its first turn
        assert recorder.batches == []  # not run beside the other work
        other_work.set()
        assert await request == [70] and busy.result()
        assert recorder.threads[0] is not threading.current_thread()

    asyncio.run(scenario())


def test_a_request_cancelled_before_it_runs_is_never_run() -> None:
    async def scenario() -> Recorder:
        recorder = ThreadRecorder()
        batcher = MicroBatcher(recorder, ModelThread(), 8, run_here_up_to=1)
        doomed = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0)  # it is now waiting for a turn of the loop
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert await batcher.submit([2]) == [20]
        return recorder

    assert asyncio.run(scenario()).batches == [[2]]


def test_the_model_thread_counts_its_jobs_failed_ones_too() -> None:
    model_thread = ModelThread()
    release = threading.Event()
    running = model_thread.submit(release.wait, GUARD_S)
    queued = model_thread.submit(lambda: 1 / 0)
    assert not model_thread.idle
    release.set()
    assert running.result() is True
    with pytest.raises(ZeroDivisionError):
        queued.result()
    assert model_thread.idle
