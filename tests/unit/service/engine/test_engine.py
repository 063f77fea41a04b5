"""The engine's front door on the tiny test model: served and inline engines agree, and every
piece of work is reported to the observer, not recorded by the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from service.engine.engine import Engine, EngineConfig
from service.engine.reports import BatchReport, Observer, StepSummary, TokenTally
from service.engine.types import GenerationRequest, NextWordQuery, Overloaded

QUERIES = [NextWordQuery("the", 3), NextWordQuery("in the", 5), NextWordQuery("the ci", 3, complete=True)]


class Recording(Observer):
    def __init__(self) -> None:
        self.batches: list[BatchReport] = []
        self.steps: list[StepSummary] = []
        self.scores: list[TokenTally] = []
        self.rejections = 0

    def predicted(self, report: BatchReport) -> None:
        self.batches.append(report)

    def stepped(self, report: StepSummary) -> None:
        self.steps.append(report)

    def scored(self, tally: TokenTally) -> None:
        self.scores.append(tally)

    def rejected(self) -> None:
        self.rejections += 1


@pytest.fixture(scope="module")
def served(tiny_model_tag: str) -> Iterator[tuple[Engine, Recording]]:
    observer = Recording()
    config = EngineConfig(state_cache_mb=8, max_batch_size=4, max_queued_tokens=40)
    engine = Engine.start(tiny_model_tag, config, observer, shape=lambda answers: [("shaped", a) for a in answers])
    yield engine, observer
    engine.close()


@pytest.fixture(scope="module")
def inline(tiny_model_tag: str) -> Engine:
    return Engine.inline(tiny_model_tag, EngineConfig())


def test_served_and_inline_engines_give_the_same_answers(served, inline: Engine) -> None:
    engine, _ = served
    shaped = asyncio.run(engine.predict_next(QUERIES))
    assert [kind for kind, _ in shaped] == ["shaped"] * len(QUERIES)
    assert [answer for _, answer in shaped] == inline.run_predict_next(QUERIES)
    request = GenerationRequest("the", max_new_tokens=6, seed=3)
    (generated,) = asyncio.run(engine.generate([request]))
    assert generated == inline.run_generate([request])[0]


def test_each_batch_and_step_is_reported_to_the_observer(served) -> None:
    engine, observer = served
    before_batches, before_steps = len(observer.batches), len(observer.steps)
    asyncio.run(engine.predict_next(QUERIES))
    batches = observer.batches[before_batches:]
    assert sum(report.inputs for report in batches) == len(QUERIES)
    assert all(report.tally.read > 0 and report.seconds > 0 for report in batches)
    assert batches[-1].cache is not None  # the engine has a state cache
    asyncio.run(engine.generate([GenerationRequest("the", max_new_tokens=7, seed=1, temperature=0.0)]))
    steps = observer.steps[before_steps:]
    assert sum(report.generated for report in steps) == 7
    assert steps[-1].outstanding_tokens == 0 and steps[-1].running == 0
    assert engine.stats().outstanding_tokens == 0


def test_a_refusal_and_a_scoring_are_reported(served) -> None:
    engine, observer = served
    rejections = observer.rejections

    async def over_the_bound() -> None:
        first = asyncio.ensure_future(engine.generate([GenerationRequest("the", max_new_tokens=30)]))
        await asyncio.sleep(0)  # admitted: 30 of the 40 tokens outstanding
        with pytest.raises(Overloaded):
            engine.stream([GenerationRequest("the", max_new_tokens=30)])
        await first

    asyncio.run(over_the_bound())
    assert observer.rejections == rejections + 1
    ids = engine.tokenize("the city").ids
    scored = asyncio.run(engine.score([ids], top=2))
    assert len(scored[0]) == len(ids) and scored[0][0] is None
    assert observer.scores[-1].run == len(ids) - 1


def test_an_inline_engine_has_no_batcher_or_scheduler(inline: Engine) -> None:
    with pytest.raises(RuntimeError, match="inline"):
        asyncio.run(inline.predict_next(QUERIES))
    assert inline.stats().decode_rate is None
