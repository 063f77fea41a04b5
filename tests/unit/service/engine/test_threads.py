"""Torch threads by batch size: one for small batches, the worker's share for large ones."""

from __future__ import annotations

import threading

import pytest
import torch

from service.engine.threads import LARGE_DECODE_STEP, SMALL_BATCH, TorchThreads


def threads_after(threads: TorchThreads, rows: int, spare_loop_core: bool) -> int:
    """torch's thread count set on a fresh thread (the setting is per calling thread)."""
    seen: list[int] = []

    def run() -> None:
        threads.use_for(rows, spare_loop_core)
        seen.append(torch.get_num_threads())

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return seen[0]


@pytest.mark.parametrize(
    ("rows", "spare_loop_core", "expected"),
    [(1, False, 1), (SMALL_BATCH - 1, True, 1), (SMALL_BATCH, False, 3), (SMALL_BATCH, True, 2), (128, True, 2)],
)
def test_small_batches_run_on_one_thread_and_large_ones_on_their_share(
    rows: int, spare_loop_core: bool, expected: int
) -> None:
    assert threads_after(TorchThreads(large_batch=3, large_predict_batch=2), rows, spare_loop_core) == expected


def test_a_large_generate_step_takes_every_core_and_a_smaller_one_leaves_the_loop_one() -> None:
    threads = TorchThreads(large_batch=3, large_predict_batch=2)
    seen: list[int] = []

    def run() -> None:
        for rows in (LARGE_DECODE_STEP, LARGE_DECODE_STEP - 1, SMALL_BATCH, SMALL_BATCH - 1, 128):
            threads.for_generate(rows)
            seen.append(torch.get_num_threads())

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert seen == [3, 2, 2, 1, 3]
