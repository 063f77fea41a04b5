"""Capacity in people: how many paced typists a server holds with keystroke p99 within 20 ms.

Each typist types a fresh passage of the test split at 5 keystrokes/s, open
loop: keystroke k is due at its start + k / 5 s whether or not the last one
was answered, and its latency counts from when it was due, so a server (or
a load generator) that falls behind is charged for it. Each keystroke asks
``/predict_next`` for the top 3, completing the word while inside one (the
typing page's request; Triton gets the same inputs in its own protocol). For
a count of typists, a 10 s run gives the p99; the count held is found by
stepping up or down from a first guess until the bound is crossed, then
bisecting, to within 5%.

The servers are searched in interleaved rounds, one server running at a
time, as ``bench.peers_run`` measures them, so that this machine's drift
hits each alike; each round's search starts from the server's count in the
round before, and the median over rounds is reported. LitServe and Triton
keep the batching that ``make bench-peers`` kept (``bench/results/peers.json``),
or its first sweep setting when there is no such file.

The load generator (aiohttp, one process) is measured the same way against
nginx answering a fixed body, so its own limit is known and stated: a
server's figure is only meaningful well below it.

Usage::

    python -m bench.people --model nextword:latest [--peers plain_fastapi,litserve,triton] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bench.engine import typing_words
from bench.launcher import Server
from bench.load import no_collector_pauses, percentile
from bench.peers.kserve import MODEL_PATH, infer_body
from bench.proxy import NginxProcess
from training.download import default_corpus

KEYSTROKES_PER_S = 5.0
BOUND_MS = 20.0
PASSAGE_WORDS = 60
STEP = 1.25  # from a first guess, each try this much more or fewer typists until the bound is crossed
RESULTS = Path("bench/results/people.json")
PEERS_RESULTS = Path("bench/results/peers.json")


def keystroke_body(passage: str, n: int) -> dict:
    text = passage[: n % len(passage) + 1]
    return {"inputs": [{"text": text, "top_k": 3, "complete": not text[-1].isspace()}]}


def as_triton(body: dict) -> dict:
    """The same keystroke in Triton's protocol (KServe v2 tensors)."""
    item = body["inputs"][0]
    return infer_body([item["text"]], item["top_k"], item["complete"])


async def typists(
    url: str, passages: list[str], seconds: float, protocol: Callable[[dict], dict] | None = None
) -> tuple[float, int, int]:
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
                async with session.post(url, json=body) as response:
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
                body = keystroke_body(passage, k)
                if protocol is not None:
                    body = protocol(body)
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                pending.append(asyncio.create_task(keystroke(due, body)))
            await asyncio.gather(*pending)

        await asyncio.gather(*(typist(p) for p in passages))
    return percentile(latencies, 99) * 1000, len(latencies), failed


def holds(
    url: str, count: int, words: list[str], seconds: float, round_number: int, protocol: Callable[[dict], dict] | None
) -> tuple[bool, float]:
    first = round_number * 997 + count * 31
    # Consecutive passages from there, around the split's end if more typists than it holds (the load generator's).
    passages = [
        " ".join(words[(first + i * PASSAGE_WORDS + j) % len(words)] for j in range(PASSAGE_WORDS))
        for i in range(count)
    ]
    with no_collector_pauses():
        p99, _, failed = asyncio.run(typists(url, passages, seconds, protocol))
    return p99 <= BOUND_MS and failed == 0, p99


def next_count(good: int, bad: int | None, count: int, step: float) -> int:
    """The next count to try: past the last one by ``step`` until the bound is crossed both ways, then halfway."""
    if bad is None:
        return max(count + 1, round(count * step))
    if good == 0:
        return min(bad - 1, round(count / step))
    return (good + bad) // 2


def capacity(
    url: str,
    words: list[str],
    seconds: float,
    label: str,
    first_guess: int = 8,
    step: float = 2.0,
    protocol: Callable[[dict], dict] | None = None,
) -> dict:
    """The most typists held at p99 <= 20 ms, to within 5%: from ``first_guess``, up or down by ``step``, then
    bisecting."""
    tried: dict[int, float] = {}
    good, bad, count, run = 0, None, first_guess, 0
    while bad is None or good == 0 or bad - good > max(1, good // 20):
        ok, p99 = holds(url, count, words, seconds, run, protocol)
        run += 1
        tried[count] = p99
        print(f"  {label}: {count} typists, p99 {p99:.1f} ms {'held' if ok else 'not held'}")
        if ok:
            good = count
        else:
            bad = count
        count = next_count(good, bad, count, step)
        if count in tried or count <= 0 or count > 4000:
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


def kept_batching(name: str) -> tuple[str, ...]:
    """A tunable peer's batching options: those ``make bench-peers`` last kept, else its sweep's first."""
    from bench.peers_run import TUNABLE

    tunable = TUNABLE[name]
    kept = json.loads(PEERS_RESULTS.read_text()).get("batching", {}) if PEERS_RESULTS.exists() else {}
    if name in kept:
        return tunable.options(kept[name]["max_batch_size"], kept[name]["wait_s"])
    return tunable.options(*tunable.sweep[0])


def main(argv: list[str] | None = None) -> int:
    from bench.peers_run import PEERS_PYTHON, TUNABLE, peer

    parser = argparse.ArgumentParser(prog="python -m bench.people", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument(
        "--peers", default="plain_fastapi,litserve,triton", help="peers to hold against ours, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--peers-python", default=PEERS_PYTHON)
    args = parser.parse_args(argv)
    words = typing_words(default_corpus())
    peers = [name for name in args.peers.split(",") if name]
    starts: dict[str, Callable[[], Server]] = {"nextword": lambda: Server(env={"NEXTWORD_MODEL": args.model})}
    for name in peers:
        options = kept_batching(name) if name in TUNABLE else ()
        starts[name] = lambda name=name, options=options: peer(name, args.model, args.peers_python, *options)
    results: dict = {"rounds": args.rounds, "seconds": args.seconds}
    with static_answer() as static:
        results["load_generator_alone"] = capacity(
            static.url, words, args.seconds, "load generator (nginx, fixed body)"
        )
    held: dict[str, list[int]] = {name: [] for name in starts}
    searches: dict[str, list[dict]] = {name: [] for name in starts}
    for round_number in range(1, args.rounds + 1):
        for name, start in starts.items():
            path, protocol = (MODEL_PATH, as_triton) if name == "triton" else ("/predict_next", None)
            first_guess, step = (held[name][-1], STEP) if held[name] and held[name][-1] else (8, 2.0)
            with start() as server:
                found = capacity(server.url + path, words, args.seconds, name, first_guess, step, protocol)
            held[name].append(found["typists"])
            searches[name].append(found)
        print(f"  round {round_number} of {args.rounds} done: {', '.join(f'{n} {h[-1]}' for n, h in held.items())}")
    for name in starts:
        results[name] = {"typists": statistics.median(held[name]), "per_round": held[name], "searches": searches[name]}
    best = max(peers, key=lambda name: results[name]["typists"])
    results["best_peer"] = best
    results["ratios"] = {name: results["nextword"]["typists"] / max(results[name]["typists"], 1) for name in peers}
    # Within a round the servers are minutes apart, across rounds the machine may drift far more.
    results["ratios_per_round"] = {
        name: [ours / max(theirs, 1) for ours, theirs in zip(held["nextword"], held[name], strict=True)]
        for name in peers
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\ntypists held at keystroke p99 <= {BOUND_MS:g} ms, {KEYSTROKES_PER_S:g} keystrokes/s each, open loop,")
    print(f"medians of {args.rounds} interleaved rounds (each round's count in brackets)")
    print(f"  the load generator alone: {results['load_generator_alone']['typists']} (its own limit)")
    for name in starts:
        ratio = ""
        if name != "nextword":
            each = ", ".join(f"{r:.2f}" for r in results["ratios_per_round"][name])
            ratio = f"   nextword / it: {results['ratios'][name]:.2f} (round by round: {each})"
        print(f"  {name:14s} {results[name]['typists']:6g}  {held[name]}{ratio}")
    paired = statistics.median(results["ratios_per_round"][best])
    print(
        f"  target: nextword over the best peer ({best}) >= 1.5: {results['ratios'][best]:.2f}"
        f" (median of the rounds' ratios {paired:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
