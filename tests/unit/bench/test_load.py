"""The closed loop's tokens/s: what falls inside the load's window, whatever runs on after it; its quiet collector."""

from __future__ import annotations

import gc

import pytest

from bench.load import LoadRun, Sample, no_collector_pauses


def generation(started: float, seconds: float, tokens: int, status: int = 200) -> Sample:
    return Sample("long", status, seconds, tokens, started=started)


def test_answers_inside_the_window_count_whole() -> None:
    run = LoadRun([generation(100.0, 2.0, 40), generation(102.0, 3.0, 60)], started=100.0, seconds=10.0, wall_s=5.0)
    assert run.tokens_per_s() == pytest.approx(10.0)  # 100 tokens in 10 s, though the last answer came at 5 s


def test_an_answer_running_past_the_deadline_counts_for_its_time_inside() -> None:
    inside = generation(100.0, 8.0, 40)
    straddling = generation(108.0, 4.0, 200)  # 2 of its 4 s inside the window
    run = LoadRun([inside, straddling], started=100.0, seconds=10.0, wall_s=12.0)
    assert run.tokens_per_s() == pytest.approx((40 + 200 * 2 / 4) / 10)


def test_the_slow_tail_no_longer_lowers_the_rate() -> None:
    """Two servers that generate at the same rate during the load, one whose last answer comes later."""
    prompt = [generation(100.0 + i, 1.0, 100) for i in range(10)]
    late = LoadRun([*prompt, generation(109.5, 5.5, 550)], started=100.0, seconds=10.0, wall_s=15.0)
    on_time = LoadRun([*prompt, generation(109.5, 0.5, 50)], started=100.0, seconds=10.0, wall_s=10.0)
    assert late.tokens_per_s() == pytest.approx(on_time.tokens_per_s()) == pytest.approx(105.0)


def test_refusals_and_failures_add_nothing() -> None:
    run = LoadRun([generation(100.0, 1.0, 0, status=429), generation(101.0, 1.0, 10)], 100.0, 10.0, 2.0)
    assert run.tokens_per_s() == pytest.approx(1.0)


def test_the_collector_is_off_inside_and_back_after() -> None:
    assert gc.isenabled()
    with no_collector_pauses():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
