"""Deadline-aware shedding: refuse queued /generate work that can no longer finish in time.

Admission (``service.engine.scheduler``) bounds the outstanding tokens by what the
decode rate measured before finishes within the request timeout. A burst
can decode slower than that (``docs/benchmarks.md``, overload), and then the last rows admitted would run
until the timeout answers them 504, holding their client for the whole
timeout. So while rows wait, the scheduler asks which of them could no
longer finish even at the rate the engine has decoded at over the last
seconds (``Scheduler.steady_rate``, slower to move than the admission
rate, so that the dip of a burst's first seconds sheds nothing), and refuses
them at once with 429 and ``Retry-After``, like a request refused at
admission, so the client can retry elsewhere.

The estimate errs towards keeping a row: it sheds only what would be late
even if that rate held. A queued row cannot finish
before the engine has done the work ahead of it and its own
(``(ahead + own) / rate``), nor, under continuous batching, where a queue
means a full batch, before its own tokens have taken one saturated step
each (``own * max_rows / rate``): it is shed when the later of the two
passes its deadline. Rows already decoding are never shed: their
work is half done, and the estimate of their finish is the least certain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.engine.request import Row

SHED_EVERY_S = 0.25  # at most this often: a scan costs a pass over the queue


@dataclass(frozen=True)
class Late:
    """A queued row that cannot finish by its deadline, and when its job could be served."""

    row: Row
    retry_after_s: float  # when the work ahead of it will have been done


def late_rows(waiting: Iterable[Row], running_tokens: int, rate: float, step_s: float, now: float) -> list[Late]:
    """The queued rows, in queue order, that finish after their deadline at ``rate`` tokens/s.

    ``running_tokens``: tokens the running rows have still to generate.
    ``step_s``: the least time a decode step will take once a queued row
    runs (a saturated step, ``max_rows / rate``, under continuous batching,
    where a queue means a full batch; 0 where a row may run in a small batch).
    A row's deadline (``time.monotonic()``) is its job's ``deadline``; jobs
    without one (streams, whose 200 may already be on its way) are never shed.
    """
    ahead = running_tokens
    late: list[Late] = []
    for row in waiting:
        if row.cancelled:  # leaves at admission: no work, nothing to refuse
            continue
        own = row.input.max_new_tokens
        deadline = row.job.deadline if row.job is not None else None
        if deadline is not None and now + max((ahead + own) / rate, own * step_s) > deadline:
            late.append(Late(row, ahead / rate))
            continue  # refused: no work ahead of the rows behind it
        ahead += own
    return late
