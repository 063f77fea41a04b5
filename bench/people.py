"""Capacity in people: how many paced typists a server holds with keystroke p99 within 20 ms.

Each typist types a fresh passage of the test split at 5 keystrokes/s, open
loop: keystroke k is due at its start + k / 5 s whether or not the last one
was answered, and its latency counts from when it was due, so a server (or
a load generator) that falls behind is charged for it. Each keystroke asks
``/predict_next`` for the top 3, completing the word while inside one (the
typing page's request). For a count of typists, a 10 s run gives the p99;
the count held is found by doubling, then bisecting, to within 5%.

The load generator (aiohttp, one process) is measured the same way against
nginx answering a fixed body, so its own limit is known and stated: a
server's figure is only meaningful well below it.

Usage::

    python -m bench.people --model nextword:latest [--peer plain_fastapi] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bench.engine import typing_words
from bench.launcher import Server
from bench.load import no_collector_pauses, percentile
from bench.proxy import NginxProcess
from training.download import default_corpus

KEYSTROKES_PER_S = 5.0
BOUND_MS = 20.0
PASSAGE_WORDS = 60
RESULTS = Path("bench/results/people.json")


def keystroke_body(passage: str, n: int) -> dict:
    text = passage[: n % len(passage) + 1]
    return {"inputs": [{"text": text, "top_k": 3, "complete": not text[-1].isspace()}]}


async def typists(url: str, passages: list[str], seconds: float) -> tuple[float, int, int]:
    """All typists for ``seconds``: keystroke p99 in ms (from when each was due), answered, failed."""
    latencies: list[float] = []
    failed = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.perf_counter() + 0.5
        rng = random.Random(0)

        async def keystroke(due: float, body: dict) -> None:
            nonlocal failed
            try:
                async with session.post(f"{url}/predict_next", json=body) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - due)
            else:
                failed += 1

        async def typist(passage: str) -> None:
            offset = rng.random() / KEYSTROKES_PER_S  # typists out of step with each other
            pending = []
            for k in range(int(seconds * KEYSTROKES_PER_S)):
                due = start + offset + k / KEYSTROKES_PER_S
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                pending.append(asyncio.create_task(keystroke(due, keystroke_body(passage, k))))
            await asyncio.gather(*pending)

        await asyncio.gather(*(typist(p) for p in passages))
    return percentile(latencies, 99) * 1000, len(latencies), failed


def holds(url: str, count: int, words: list[str], seconds: float, round_number: int) -> tuple[bool, float]:
    first = round_number * 997 + count * 31
    # Consecutive passages from there, around the split's end if more typists than it holds (the load generator's).
    passages = [
        " ".join(words[(first + i * PASSAGE_WORDS + j) % len(words)] for j in range(PASSAGE_WORDS))
        for i in range(count)
    ]
    with no_collector_pauses():
        p99, _, failed = asyncio.run(typists(url, passages, seconds))
    return p99 <= BOUND_MS and failed == 0, p99


def capacity(url: str, words: list[str], seconds: float, label: str) -> dict:
    """The most typists held at p99 <= 20 ms: doubling from 8, then bisecting to within 5%."""
    tried: dict[int, float] = {}
    good, bad, count, run = 0, None, 8, 0
    while bad is None or bad - good > max(1, good // 20):
        ok, p99 = holds(url, count, words, seconds, run)
        run += 1
        tried[count] = p99
        print(f"  {label}: {count} typists, p99 {p99:.1f} ms {'held' if ok else 'not held'}")
        if ok:
            good = count
        else:
            bad = count
        count = count * 2 if bad is None else (good + bad) // 2
        if count in tried or count == 0 or count > 4000:
            break
    return {"typists": good, "tried_p99_ms": {str(k): round(v, 2) for k, v in sorted(tried.items())}}


def static_answer() -> NginxProcess:
    """nginx answering every request with one fixed body: what the load generator alone can drive."""
    body = '[{"predictions": []}]'
    return NginxProcess(
        lambda port: (
            f"    server {{ listen 127.0.0.1:{port}; "
            f"location / {{ default_type application/json; return 200 '{body}'; }} }}"
        )
    )


def main(argv: list[str] | None = None) -> int:
    from bench.peers_run import PEERS_PYTHON, peer

    parser = argparse.ArgumentParser(prog="python -m bench.people", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--peer", default="plain_fastapi", help="the peer to hold against ours (its /predict_next)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--peers-python", default=PEERS_PYTHON)
    args = parser.parse_args(argv)
    words = typing_words(default_corpus())
    starts: dict[str, Callable[[], Server]] = {
        "nextword": lambda: Server(env={"NEXTWORD_MODEL": args.model}),
        args.peer: lambda: peer(args.peer, args.model, args.peers_python),
    }
    results = {}
    with static_answer() as static:
        results["load_generator_alone"] = capacity(
            static.url, words, args.seconds, "load generator (nginx, fixed body)"
        )
    for name, start in starts.items():
        with start() as server:
            results[name] = capacity(server.url, words, args.seconds, name)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    ours, theirs = results["nextword"]["typists"], results[args.peer]["typists"]
    print(f"\ntypists held at keystroke p99 <= {BOUND_MS:g} ms, {KEYSTROKES_PER_S:g} keystrokes/s each, open loop")
    print(f"  the load generator alone: {results['load_generator_alone']['typists']} (its own limit)")
    print(f"  nextword: {ours}; {args.peer}: {theirs}; ratio {ours / max(theirs, 1):.2f} [>= 1.5]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
