"""The engine's reports as the ``nextword_*`` metrics: each report moves exactly the series it names."""

from __future__ import annotations

from prometheus_client import REGISTRY

from service.engine.reports import BatchReport, CacheReport, StepSummary, TokenTally
from service.engine.state_cache import CacheStats
from service.metrics import MetricsObserver


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_predict_next_batch_is_recorded_under_its_endpoint() -> None:
    before = {
        "batches": value("nextword_batch_size_count", endpoint="predict_next"),
        "inputs": value("nextword_batch_size_sum", endpoint="predict_next"),
        "read": value("nextword_prefix_tokens_total", endpoint="predict_next"),
        "run": value("nextword_tokens_processed_total", endpoint="predict_next"),
        "unknown": value("nextword_unknown_tokens_total", endpoint="predict_next"),
        "hits": value("nextword_state_cache_hits_total"),
    }
    cache = CacheReport(CacheStats(hits=2, misses=1, tokens_saved=9), bytes=4096)
    MetricsObserver().predicted(BatchReport(3, 0.002, 1, TokenTally(read=12, run=3), cache))
    assert value("nextword_batch_size_count", endpoint="predict_next") == before["batches"] + 1
    assert value("nextword_batch_size_sum", endpoint="predict_next") == before["inputs"] + 3
    assert value("nextword_prefix_tokens_total", endpoint="predict_next") == before["read"] + 12
    assert value("nextword_tokens_processed_total", endpoint="predict_next") == before["run"] + 3
    assert value("nextword_unknown_tokens_total", endpoint="predict_next") == before["unknown"] + 1
    assert value("nextword_state_cache_hits_total") == before["hits"] + 2
    assert value("nextword_state_cache_bytes") == 4096


def test_a_generation_step_moves_the_generate_series_and_the_gauges() -> None:
    generated = value("nextword_tokens_generated_total")
    cancelled = value("nextword_generate_cancelled_rows_total")
    shed = value("nextword_generate_shed_total")
    steps = value("nextword_batch_size_count", endpoint="generate")
    report = StepSummary(
        rows=4,
        seconds=0.01,
        tally=TokenTally(read=5, run=5),
        unknown=0,
        generated=3,
        cancelled=1,
        shed=2,
        running=3,
        queued=6,
        outstanding_tokens=77,
        cache=None,
    )
    MetricsObserver().stepped(report)
    assert value("nextword_tokens_generated_total") == generated + 3
    assert value("nextword_generate_cancelled_rows_total") == cancelled + 1
    assert value("nextword_generate_shed_total") == shed + 2
    assert value("nextword_batch_size_count", endpoint="generate") == steps + 1
    assert value("nextword_generate_rows", state="running") == 3
    assert value("nextword_generate_rows", state="queued") == 6
    assert value("nextword_generate_outstanding_tokens") == 77
    idle = StepSummary(0, 0.0, TokenTally(), 0, 0, 0, 0, 0, 0, 0, None)
    MetricsObserver().stepped(idle)  # a step that only dropped rows: no batch observed
    assert value("nextword_batch_size_count", endpoint="generate") == steps + 1


def test_refusals_and_scoring_have_their_own_series() -> None:
    rejected = value("nextword_generate_rejected_total")
    scored = value("nextword_prefix_tokens_total", endpoint="score")
    MetricsObserver().rejected()
    MetricsObserver().scored(TokenTally(read=8, run=8))
    assert value("nextword_generate_rejected_total") == rejected + 1
    assert value("nextword_prefix_tokens_total", endpoint="score") == scored + 8
