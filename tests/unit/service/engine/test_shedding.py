"""Which queued /generate rows are shed: service.engine.shedding's estimate, on rows as the scheduler holds them.

The engine's behaviour over HTTP (a 429 from the queue instead of a 504) is
tested in tests/server/test_engine.py; here, the arithmetic, at 100 tokens/s with
10 rows at a time (a saturated step of 0.1 s), at time 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.engine.request import Row
from service.engine.shedding import late_rows
from service.engine.types import GenerationRequest

RATE, MAX_ROWS = 100.0, 10


@dataclass
class Request:
    """The part of the scheduler's Job that shedding reads."""

    deadline: float | None


def queued(tokens: int, deadline: float | None, cancelled: bool = False) -> Row:
    row = Row(input=GenerationRequest("the", max_new_tokens=tokens), prompt=None, stops=[], generator=None)
    row.job, row.cancelled = Request(deadline), cancelled
    return row


def shed(waiting: list[Row], running_tokens: int = 0) -> list[Row]:
    return [late.row for late in late_rows(waiting, running_tokens, RATE, MAX_ROWS / RATE, now=0.0)]


def test_a_queue_that_finishes_in_time_keeps_every_row() -> None:
    waiting = [queued(20, deadline=10.0) for _ in range(5)]  # 100 tokens
    assert shed(waiting, running_tokens=100) == []  # plus 100 running: all done by 2 s


def test_rows_past_their_deadline_at_the_current_rate_are_shed_in_queue_order() -> None:
    waiting = [queued(10, deadline=2.0) for _ in range(30)]  # the k-th finishes at (100 + 10k) / 100 s at best
    late = shed(waiting, running_tokens=100)
    assert late == waiting[10:]  # the 10th would finish at 2.0 s; the 11th at 2.1 s, past its deadline


def test_a_shed_row_is_not_work_ahead_of_the_rows_behind_it() -> None:
    big, small = queued(250, deadline=2.0), queued(10, deadline=2.0)
    assert shed([big, small], running_tokens=100) == [big]  # small: (100 + 10) / 100 = 1.1 s


def test_a_long_row_with_nothing_ahead_is_shed_when_its_own_steps_take_too_long() -> None:
    # 15 tokens are 0.15 s of the engine's work, but 15 saturated steps of 0.1 s: 1.5 s.
    long_row = queued(15, deadline=1.0)
    assert shed([long_row]) == [long_row]
    assert shed([queued(15, deadline=2.0)]) == []
    assert late_rows([long_row], 0, RATE, step_s=0.0, now=0.0) == []  # it may run alone, in fast steps


def test_streams_are_never_shed_but_count_as_work_ahead() -> None:
    stream, whole = queued(250, deadline=None), queued(10, deadline=2.0)
    assert shed([stream, whole]) == [whole]  # behind 2.5 s of streamed work


def test_cancelled_rows_are_neither_shed_nor_work_ahead() -> None:
    gone, whole = queued(250, deadline=0.5, cancelled=True), queued(10, deadline=2.0)
    assert shed([gone, whole]) == []
