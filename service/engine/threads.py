"""How many torch threads a batch runs on.

Usage::

    threads = TorchThreads(large_batch=2, large_predict_batch=1)
    threads.use_for(rows=32, spare_loop_core=True)  # before running a /predict_next batch of 32
    scheduler = Scheduler(..., threads_for=threads.for_generate)

Small batches run on one thread: for them, waking a second idle core costs
more than it saves, while large batches gain from every core. A
/predict_next batch leaves one core to the event loop, which short requests
keep as busy as the model. So does a decode step of fewer than
``LARGE_DECODE_STEP`` rows: in process two threads run it faster, but served,
the loop wakes for every step's tokens and for the requests coming and
going, and each time it takes a core from the OpenMP team the whole step
waits at the next barrier; only a long step amortizes that.
``docs/benchmarks.md`` has the measurements behind each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SMALL_BATCH = 8  # batches smaller than this run on one torch thread
LARGE_DECODE_STEP = 64  # decode steps of this many rows and more take every core


@dataclass(frozen=True)
class TorchThreads:
    large_batch: int  # threads for a large batch: a worker's share of the cores
    large_predict_batch: int  # the same for /predict_next: one fewer, left to the event loop

    def use_for(self, rows: int, spare_loop_core: bool) -> None:
        """Set torch's threads for a batch of ``rows`` (torch's setting is per calling thread)."""
        large = self.large_predict_batch if spare_loop_core else self.large_batch
        threads = 1 if rows < SMALL_BATCH else large
        if torch.get_num_threads() != threads:  # decode steps come hundreds a second
            torch.set_num_threads(threads)

    def for_generate(self, rows: int) -> None:
        """Set torch's threads for a decode step or prefill of ``rows``."""
        self.use_for(rows, spare_loop_core=rows < LARGE_DECODE_STEP)
