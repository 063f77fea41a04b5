"""The engine in process, on the tiny test model: a failing step, and work that joins the running chain.

Over HTTP (tests/server/test_engine.py) a step cannot be made to fail; here a
Predictor whose decode step raises once stands in for a device error
(out of memory, say), and the real scheduler must fail just the rows it
was running, answer their requests with the error, and keep serving.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from models.bundle import load_bundle
from service.engine.inference import DecodeBatch, Predictor
from service.engine.request import Row
from service.engine.scheduler import Scheduler, SchedulerConfig
from service.engine.types import GenerationRequest

GREEDY = {"prompt": "the", "temperature": 0.0}


class Counted(Predictor):
    """The real predictor, counting its decode steps; step number ``fail_at`` raises instead."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.steps = 0
        self.fail_at: int | None = None
        self.stepped = threading.Condition()

    def step(self, batch: DecodeBatch) -> list[tuple[Row, int | None]]:
        with self.stepped:
            self.steps += 1
            self.stepped.notify_all()
            if self.steps == self.fail_at:
                raise RuntimeError("the device failed")
        return super().step(batch)

    def wait_for_steps(self, steps: int) -> None:
        """Block the calling thread until ``steps`` decode steps have run (a guard fails a stuck engine)."""
        with self.stepped:
            assert self.stepped.wait_for(lambda: self.steps >= steps, timeout=60), "the engine is stuck"


@pytest.fixture(scope="module")
def engine(tiny_model_tag: str):
    predictor = Counted(load_bundle(tiny_model_tag, torch.device("cpu")), torch.device("cpu"))
    with ThreadPoolExecutor(max_workers=1) as model_thread:
        scheduler = Scheduler(predictor, model_thread, SchedulerConfig(max_rows=4, timeout_s=30))
        model_thread.submit(scheduler.calibrate).result()
        yield scheduler, predictor


def test_a_failing_step_fails_its_rows_and_the_engine_keeps_serving(engine) -> None:
    scheduler, predictor = engine

    async def scenario() -> None:
        predictor.fail_at = predictor.steps + 3  # its third step, of 200
        running = asyncio.ensure_future(scheduler.generate([GenerationRequest(**GREEDY, max_new_tokens=200)]))
        with pytest.raises(RuntimeError, match="the device failed"):
            await running
        (after,) = await scheduler.generate([GenerationRequest(**GREEDY, max_new_tokens=5)])
        assert len(after.tokens) == 5  # greedy on the tiny model never ends its text early

    asyncio.run(scenario())
    assert scheduler.outstanding_tokens == 0


def test_requests_submitted_while_steps_run_all_finish_in_order_of_their_own(engine) -> None:
    scheduler, _ = engine

    async def scenario() -> list[int]:
        jobs = []
        for n in range(1, 13):  # 12 requests, 4 rows at a time: most join a running chain
            jobs.append(asyncio.ensure_future(scheduler.generate([GenerationRequest(**GREEDY, max_new_tokens=n)])))
            await asyncio.sleep(0)  # the loop turns: reports of the running steps are delivered
        return [len(output.tokens) for (output,) in await asyncio.gather(*jobs)]

    assert asyncio.run(scenario()) == list(range(1, 13))
    assert scheduler.outstanding_tokens == 0


def test_a_stream_gets_every_token_when_the_loop_falls_behind_the_steps(engine) -> None:
    """The model thread runs steps ahead of the event loop; a report read late must still say
    which rows finished at its own step, not at a later one (a stream once lost its last tokens)."""
    scheduler, predictor = engine

    async def scenario() -> tuple[list[int | None], int]:
        start = predictor.steps
        job = scheduler.submit([GenerationRequest(**GREEDY, max_new_tokens=30)], stream=True)
        predictor.wait_for_steps(start + 30)  # the event loop is blocked: every step runs before any report is read
        tokens = [token async for _row, token in job.tokens()]
        return tokens, len(job.rows[0].ids)

    tokens, generated = asyncio.run(scenario())
    assert len(tokens) == generated == 30
    assert scheduler.outstanding_tokens == 0
