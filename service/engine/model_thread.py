"""The one thread per worker that runs the model, and whether it is idle.

Every torch call of a worker runs on this thread (``service.service`` says
why), so the model never runs twice at once. It counts the jobs submitted and
not yet finished, so the event loop can tell when the thread has nothing to
do: the micro-batcher then runs a lone small request on the loop's own
thread (``service.engine.batcher``), sparing it two thread hand-offs.

``idle`` is exact when read on the event loop: jobs are submitted only from
the loop and from inside a running job, so with none outstanding, none can
start until the loop itself submits one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
# The model thread needs the GIL back from the busy event loop to collect each
# finished batch, and Python makes it wait up to the switch interval (5 ms by
# default); the process sets this shorter one (docs/benchmarks.md has the gain).
GIL_SWITCH_INTERVAL_S = 0.0002


class ModelThread(ThreadPoolExecutor):
    def __init__(self, name: str = "nextword-model") -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._outstanding = 0  # jobs submitted and not finished
        self._count_lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._count_lock:
            self._outstanding += 1
        try:
            return super().submit(self._counted, fn, *args, **kwargs)
        except BaseException:  # shut down: the job will never run
            self._finished()
            raise

    @property
    def idle(self) -> bool:
        """No job queued or running."""
        return self._outstanding == 0

    def _counted(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._count_lock:
            self._outstanding -= 1
