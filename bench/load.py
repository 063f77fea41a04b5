"""Closed-loop HTTP load from an asyncio client: what the engine and reliability benchmarks send and time.

Usage::

    clients = [lambda session, n: post(session, url + "/generate", body, "short")] * 32
    run = asyncio.run(closed_loop(clients, seconds=10))
    run.tokens_per_s()                 # tokens generated within the 10 s
    latency_ms(run.samples, "short")   # {"p50_ms": ..., "p99_ms": ..., "n": ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp


@dataclass
class Sample:
    kind: str
    status: int
    seconds: float
    tokens: int = 0
    first_token_s: float | None = None
    # A 429's kind: the engine's "overloaded" (at once) or "shed" (from the queue), else BentoML's
    # concurrency limit ("concurrency", whose body has no detail).
    refusal: str = ""
    started: float = 0.0  # time.perf_counter() when it was sent


@dataclass
class LoadRun:
    """A closed loop's answers, and the window in which its clients sent requests."""

    samples: list[Sample]
    started: float  # time.perf_counter() when the clients began
    seconds: float  # how long they kept sending
    wall_s: float  # until the last answer

    def tokens_per_s(self) -> float:
        """Tokens generated within the window: each answer's tokens spread evenly over its time.

        Requests under way at the end are waited for, but past the deadline
        the load is no longer the one measured: the clients that finish first
        stop, and the rest run alone (in a mixed load, the long requests decode
        without the short ones beside them). Dividing every token by the wall
        time until the last answer charged that tail's rate to the load, more
        the longer a server's long requests take, and where the deadline fell
        in their cycle moved it by up to a tenth from run to run.
        """
        end = self.started + self.seconds
        inside = 0.0
        for sample in self.samples:
            finished = sample.started + sample.seconds
            overlap = min(finished, end) - max(sample.started, self.started)
            if sample.tokens and overlap > 0:  # then its seconds are too, and at least the overlap
                inside += sample.tokens * overlap / sample.seconds
        return inside / self.seconds


async def post(session: aiohttp.ClientSession, url: str, body: dict, kind: str) -> Sample:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        payload = await response.read()
    seconds = time.perf_counter() - started
    tokens, refusal = 0, ""
    if response.status == 200 and url.endswith("/generate"):
        tokens = sum(len(item["tokens"]) for item in json.loads(payload))
    if response.status == 429:
        detail = json.loads(payload).get("detail") or [{}]
        refusal = detail[0].get("type", "concurrency")
    return Sample(kind, response.status, seconds, tokens, refusal=refusal, started=started)


async def stream(session: aiohttp.ClientSession, url: str, body: dict, kind: str) -> Sample:
    started = time.perf_counter()
    first, tokens = None, 0
    async with session.post(url, json=body) as response:
        async for line in response.content:
            if line.startswith(b'data: {"token"'):
                tokens += 1
                if first is None:
                    first = time.perf_counter() - started
    return Sample(kind, response.status, time.perf_counter() - started, tokens, first, started=started)


@contextlib.contextmanager
def no_collector_pauses() -> Iterator[None]:
    """Python's cyclic garbage collector off while a load generator runs.

    Its full collections over the samples and tasks piled up during a run
    stopped this process for over 100 ms now and then, and every request due
    meanwhile was charged for it as the server's latency. A run is bounded
    (seconds of samples), so what it leaves is freed when it ends.
    """
    gc.collect()
    gc.freeze()  # what exists now is never scanned again
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


Client = Callable[[aiohttp.ClientSession, int], "asyncio.Future[Sample]"]


async def closed_loop(clients: list[Client], seconds: float) -> LoadRun:
    """Each client sends its next request as soon as the last is answered, for ``seconds``.

    Returns every sample, the window the clients sent in, and the wall time
    until the last answer (requests under way at the end are waited for, so
    a slow tail counts in latency).
    """
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    samples: list[Sample] = []
    with no_collector_pauses():
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            started = time.perf_counter()
            deadline = started + seconds

            async def loop(client: Client) -> None:
                n = 0
                while time.perf_counter() < deadline:
                    samples.append(await client(session, n))
                    n += 1

            await asyncio.gather(*(loop(client) for client in clients))
            return LoadRun(samples, started, seconds, time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def latency_ms(samples: list[Sample], kind: str | None = None) -> dict:
    seconds = [s.seconds for s in samples if s.status == 200 and (kind is None or s.kind == kind)]
    return {"p50_ms": percentile(seconds, 50) * 1000, "p99_ms": percentile(seconds, 99) * 1000, "n": len(seconds)}
