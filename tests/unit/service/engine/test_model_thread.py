"""The model thread: one job at a time, in order, and an exact idle flag."""

from __future__ import annotations

import threading

import pytest

from service.engine.model_thread import ModelThread


def test_jobs_run_one_at_a_time_in_submission_order_on_one_thread() -> None:
    with ModelThread("test-model") as model_thread:
        order: list[int] = []
        names: set[str] = set()

        def job(n: int) -> int:
            order.append(n)
            names.add(threading.current_thread().name)
            return n * n

        futures = [model_thread.submit(job, n) for n in range(20)]
        assert [future.result() for future in futures] == [n * n for n in range(20)]
        assert order == list(range(20)) and len(names) == 1


def test_idle_counts_queued_and_running_jobs() -> None:
    with ModelThread("test-model") as model_thread:
        assert model_thread.idle
        release, running = threading.Event(), threading.Event()

        def blocking() -> None:
            running.set()
            release.wait()

        first = model_thread.submit(blocking)
        second = model_thread.submit(lambda: None)
        running.wait()
        assert not model_thread.idle  # one running, one queued
        release.set()
        first.result()
        second.result()
        assert model_thread.idle


def test_a_failing_job_still_counts_as_finished() -> None:
    with ModelThread("test-model") as model_thread:

        def fails() -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            model_thread.submit(fails).result()
        assert model_thread.idle


def test_a_job_refused_after_shutdown_leaves_it_idle() -> None:
    model_thread = ModelThread("test-model")
    model_thread.shutdown()
    with pytest.raises(RuntimeError):
        model_thread.submit(lambda: None)
    assert model_thread.idle
