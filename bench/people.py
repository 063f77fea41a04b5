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

The servers are searched in interleaved rounds, so that this machine's
drift hits each alike; each round's search starts from the server's count
in the round before, and the median over rounds is reported. nextword and
the plain FastAPI app, both quiet when idle, run side by side and are tried
in turn at each step of their searches, on the same passages: their ratio is
paired try by try. The other peers run one at a time, as ``bench.peers_run``
measures them. LitServe and Triton keep the batching that ``make
bench-peers`` kept (``bench/results/peers.json``), or their sweep's first
setting when there is no such file.

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
from contextlib import ExitStack
from pathlib import Path

import aiohttp

from bench.engine import typing_words
from bench.launcher import Server
from bench.load import no_collector_pauses, percentile
from bench.peers.kserve import MODEL_PATH, infer_body
from bench.proxy import NginxProcess
from training.download import wikitext2_corpus

KEYSTROKES_PER_S = 5.0
BOUND_MS = 20.0
PASSAGE_WORDS = 60
PAIRED = ("nextword", "plain_fastapi")  # searched side by side, in step
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


class Search:
    """The most typists held at p99 <= 20 ms, to within 5%: from ``first_guess``, up or down by ``step``, then
    bisecting. ``count`` is the next count to try, until ``done``; ``record`` takes its outcome."""

    def __init__(self, first_guess: int = 8, step: float = 2.0) -> None:
        self.count, self.step = first_guess, step
        self.good, self.bad = 0, None
        self.tried: dict[int, float] = {}
        self.done = False

    def record(self, held: bool, p99: float) -> None:
        self.tried[self.count] = p99
        if held:
            self.good = self.count
        else:
            self.bad = self.count
        if self.bad is not None and self.good and self.bad - self.good <= max(1, self.good // 20):
            self.done = True
            return
        count = next_count(self.good, self.bad, self.count, self.step)
        self.done = count in self.tried or count <= 0 or count > 4000
        self.count = count

    def result(self) -> dict:
        return {"typists": self.good, "tried_p99_ms": {str(k): round(v, 2) for k, v in sorted(self.tried.items())}}


def capacity(
    urls: dict[str, str],
    words: list[str],
    seconds: float,
    searches: dict[str, Search] | None = None,
    protocols: dict[str, Callable[[dict], dict]] | None = None,
) -> dict[str, dict]:
    """Each server's most typists held, its ``Search`` run in step with the others': one try each in turn, the
    same passages for the same try, so that the machine's drift hits them alike."""
    searches = searches if searches is not None else {name: Search() for name in urls}
    run = 0
    while not all(search.done for search in searches.values()):
        names = [name for name, search in searches.items() if not search.done]
        for name in names if run % 2 == 0 else reversed(names):  # neither always goes first
            search = searches[name]
            held, p99 = holds(urls[name], search.count, words, seconds, run, (protocols or {}).get(name))
            print(f"  {name}: {search.count} typists, p99 {p99:.1f} ms {'held' if held else 'not held'}")
            search.record(held, p99)
        run += 1
    return {name: search.result() for name, search in searches.items()}


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
    words = typing_words(wikitext2_corpus())
    peers = [name for name in args.peers.split(",") if name]
    starts: dict[str, Callable[[], Server]] = {"nextword": lambda: Server(env={"NEXTWORD_MODEL": args.model})}
    for name in peers:
        options = kept_batching(name) if name in TUNABLE else ()
        starts[name] = lambda name=name, options=options: peer(name, args.model, args.peers_python, *options)
    results: dict = {"rounds": args.rounds, "seconds": args.seconds}
    with static_answer() as static:
        results["load_generator_alone"] = capacity(
            {"load generator (nginx, fixed body)": static.url}, words, args.seconds
        )["load generator (nginx, fixed body)"]
    held: dict[str, list[int]] = {name: [] for name in starts}
    searches: dict[str, list[dict]] = {name: [] for name in starts}
    # nextword and the plain app are quiet when idle, so they run side by side and are tried in turn; LitServe's
    # idle worker loop takes a fifth of a core, so each of the others runs alone.
    groups = [[name for name in starts if name in PAIRED]] + [[name] for name in starts if name not in PAIRED]
    for round_number in range(1, args.rounds + 1):
        for group in groups:
            with ExitStack() as running:
                urls = {name: running.enter_context(starts[name]()).url for name in group}
                urls = {name: url + (MODEL_PATH if name == "triton" else "/predict_next") for name, url in urls.items()}
                seeded = {
                    name: Search(held[name][-1], STEP) if held[name] and held[name][-1] else Search() for name in group
                }
                found = capacity(urls, words, args.seconds, seeded, {"triton": as_triton})
            for name in group:
                held[name].append(found[name]["typists"])
                searches[name].append(found[name])
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
