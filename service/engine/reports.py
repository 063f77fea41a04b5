"""What the engine reports of its work, and the observer it hands each report to.

The engine counts; it does not record. After each /predict_next batch, each
generation step and each scoring batch it hands a report to its
``Observer``, whose methods do nothing by default. The service's
``service.metrics.MetricsObserver`` turns them into Prometheus metrics; a
benchmark or a test may pass its own. So the engine imports neither
``service.metrics`` nor ``prometheus_client`` (an import-linter contract).

Usage::

    class Counting(Observer):
        def predicted(self, report: BatchReport) -> None:
            self.inputs += report.inputs

    engine = Engine.start(stored, config, observer=Counting())
"""

from __future__ import annotations

from dataclasses import dataclass

from service.engine.state_cache import CacheStats, StateCache


@dataclass
class TokenTally:
    """Prompt and prefix tokens since the last ``Predictor.take_tally()``: read, and run through the model.

    ``read - run`` were served from the state cache. Ids count as the model
    reads them, each text's leading line break included.
    """

    read: int = 0
    run: int = 0


@dataclass(frozen=True, slots=True)
class CacheReport:
    """The state cache's counts since the last report, and the bytes it holds now."""

    stats: CacheStats
    bytes: int

    @classmethod
    def of(cls, cache: StateCache | None) -> CacheReport | None:
        """Take the cache's counts (they start afresh); None without a cache."""
        return None if cache is None else cls(cache.take_stats(), cache.bytes)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One /predict_next batch, reported on the thread that ran it."""

    inputs: int
    seconds: float  # tokenizing, the model, and the answers as dicts
    unknown: int  # prefix tokens outside the vocabulary
    tally: TokenTally
    cache: CacheReport | None


@dataclass(frozen=True, slots=True)
class StepSummary:
    """One generation step, reported on the event loop once its tokens are delivered."""

    rows: int  # rows decoded in the step; 0 when it only admitted or dropped rows
    seconds: float  # on the model thread
    tally: TokenTally  # prompt tokens read and run to admit its rows
    unknown: int  # prompt tokens outside the vocabulary, of the rows it admitted
    generated: int  # tokens it generated
    cancelled: int  # rows that left without finishing (a timeout, a disconnect, shedding)
    shed: int  # requests refused from the queue (``Shed``)
    running: int  # rows running after it
    queued: int  # rows waiting after it
    outstanding_tokens: int  # tokens admitted and not yet generated, after it
    cache: CacheReport | None


class Observer:
    """Receives the engine's reports; each method does nothing here. Called on the engine's own
    threads (the model thread or the event loop), so each must be quick and must not raise."""

    def predicted(self, report: BatchReport) -> None:
        """A /predict_next batch ran."""

    def stepped(self, report: StepSummary) -> None:
        """A generation step's tokens reached their requests."""

    def scored(self, tally: TokenTally) -> None:
        """A batch of prompts was scored (``Engine.score``)."""

    def rejected(self) -> None:
        """A generation request was refused at once (``Overloaded``)."""
