"""Three replicas behind nginx on loopback: session affinity against round robin and one replica alone.

Simulated typists type through the proxy a keystroke a request
(``/predict_next`` with ``complete``, top 3, as the typing page asks), each
its own passage of the test split and its own ``X-Session-ID``, in a closed
loop. Every run gives every typist a passage no run typed before, so no run
is served from an earlier run's cache. Two cache sizes:

- ``default``: each replica's state cache as ``NEXTWORD_STATE_CACHE_MB=auto``
  sizes it, 16 typists;
- ``scarce``: 1 MiB per replica, 64 typists: too small to hold every
  session's states on every replica, which is where a replica serving many
  people stands.

Modes, in alternating order over ``--rounds`` rounds: ``affinity`` (nginx's
consistent hash on the session key), ``round_robin`` (nginx's default) and
``single`` (one replica, through the same nginx). Reported per cache and
mode: keystrokes/s, keystroke p50 and p99, and the cache hit ratio, the
share of prefix tokens served from the state cache
(``1 - nextword_tokens_processed_total / nextword_prefix_tokens_total`` over
the replicas that served). Then a failover run: affinity with the default
cache, one replica stopped (SIGTERM) a third of the way in.

Every process shares this machine's cores (3 replicas of one torch thread
each, nginx, the load generator), so the figures are ratios between modes
measured in one run, not absolute capacities. Usage::

    make bench-replicas
    python -m bench.replicas --model nextword:latest [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.engine import typing_words
from bench.launcher import Server
from bench.load import percentile
from bench.proxy import SESSION_HEADER, UPSTREAM_HEADER, Nginx
from bench.run import metric_totals
from training.download import wikitext2_corpus

CACHES = {"default": ("auto", 16), "scarce": ("1", 64)}  # NEXTWORD_STATE_CACHE_MB, typists
MODES = ("affinity", "round_robin", "single")
REPLICAS = 3
PASSAGE_WORDS = 120  # more than a typist types in a run
RESULTS = Path("bench/results/replicas.json")
FAILOVER_RESULTS = Path("bench/results/replicas_failover.json")
READ, RUN = "nextword_prefix_tokens_total{predict_next}", "nextword_tokens_processed_total{predict_next}"


@dataclass
class Keystroke:
    typist: int
    status: int
    seconds: float
    upstream: str
    at: float  # when it was answered, from the run's start


class Passages:
    """Fresh passages of the test split, never the same twice in a benchmark."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.next = 0

    def take(self) -> str:
        start = self.next % (len(self.words) - PASSAGE_WORDS)
        self.next += PASSAGE_WORDS
        return " ".join(self.words[start : start + PASSAGE_WORDS])


async def type_through(
    url: str, texts: list[str], seconds: float, stop_after: float | None = None, stop: Server | None = None
) -> tuple[list[Keystroke], float]:
    """Each typist types its text a keystroke a request, in a closed loop, for ``seconds``; optionally
    ``stop`` a replica after ``stop_after`` seconds."""
    keystrokes: list[Keystroke] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + seconds

        async def typist(i: int, text: str) -> None:
            n = 0
            while time.perf_counter() < deadline:
                body = {"inputs": [{"text": text[: n % len(text) + 1], "top_k": 3, "complete": True}]}
                sent = time.perf_counter()
                async with session.post(f"{url}/predict_next", json=body, headers={SESSION_HEADER: f"typist-{i}"}) as r:
                    await r.read()
                    upstream = r.headers.get(UPSTREAM_HEADER, "").split(", ")[-1]
                now = time.perf_counter()
                keystrokes.append(Keystroke(i, r.status, now - sent, upstream, now - started))
                n += 1

        async def stopper() -> None:
            if stop is not None and stop_after is not None:
                await asyncio.sleep(stop_after)
                await asyncio.to_thread(stop.stop)

        await asyncio.gather(stopper(), *(typist(i, text) for i, text in enumerate(texts)))
        return keystrokes, time.perf_counter() - started


def measure(url: str, serving: list[Server], texts: list[str], seconds: float) -> dict:
    before = [metric_totals(server.url) for server in serving]
    keystrokes, wall = asyncio.run(type_through(url, texts, seconds))
    after = [metric_totals(server.url) for server in serving]
    read = sum(a.get(READ, 0) - b.get(READ, 0) for a, b in zip(after, before, strict=True))
    run = sum(a.get(RUN, 0) - b.get(RUN, 0) for a, b in zip(after, before, strict=True))
    ok = [k.seconds for k in keystrokes if k.status == 200]
    return {
        "keystrokes_per_s": len(ok) / wall,
        "p50_ms": percentile(ok, 50) * 1000,
        "p99_ms": percentile(ok, 99) * 1000,
        "cache_hit_ratio": 1 - run / read if read else float("nan"),
        "errors": len(keystrokes) - len(ok),
        "keystrokes": len(ok),
    }


def combine(runs: list[dict]) -> dict:
    """Rounds of one mode: medians of rates and quantiles, the pooled hit ratio, all errors."""
    return {
        "keystrokes_per_s": statistics.median(r["keystrokes_per_s"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "cache_hit_ratio": statistics.fmean(r["cache_hit_ratio"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "rounds": [{k: round(v, 4) for k, v in r.items()} for r in runs],
    }


def start_replicas(model: str, cache_mb: str) -> list[Server]:
    env = {"NEXTWORD_MODEL": model, "NEXTWORD_STATE_CACHE_MB": cache_mb, "NEXTWORD_TORCH_THREADS": "1"}
    replicas = [Server(env=env) for _ in range(REPLICAS)]  # started side by side
    try:
        for replica in replicas:
            replica.wait_ready()
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas


def compare(model: str, cache_mb: str, typists: int, passages: Passages, seconds: float, rounds: int) -> dict:
    replicas = start_replicas(model, cache_mb)
    ports = [replica.port for replica in replicas]
    try:
        with (
            Nginx(ports, "affinity") as affinity,
            Nginx(ports, "round_robin") as round_robin,
            Nginx(ports[:1], "round_robin") as single,
        ):
            proxies = {
                "affinity": (affinity, replicas),
                "round_robin": (round_robin, replicas),
                "single": (single, replicas[:1]),
            }
            runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
            warm = [passages.take() for _ in range(typists)]
            asyncio.run(type_through(affinity.url, warm, 2))  # every replica's first requests, unmeasured
            for r in range(rounds):
                for mode in MODES[r % 3 :] + MODES[: r % 3]:  # each mode first once in three rounds
                    proxy, serving = proxies[mode]
                    texts = [passages.take() for _ in range(typists)]
                    runs[mode].append(measure(proxy.url, serving, texts, seconds))
                    print(
                        f"  {mode:12s} round {r + 1}: {runs[mode][-1]['keystrokes_per_s']:7.0f} keystrokes/s, "
                        f"p99 {runs[mode][-1]['p99_ms']:6.1f} ms, hits {runs[mode][-1]['cache_hit_ratio']:.1%}"
                    )
            return {mode: combine(runs[mode]) for mode in MODES}
    finally:
        for replica in replicas:
            replica.stop()


def failover(model: str, typists: int, passages: Passages, seconds: float) -> dict:
    """Affinity, default cache: one replica stopped a third of the way in."""
    replicas = start_replicas(model, "auto")
    try:
        with Nginx([replica.port for replica in replicas], "affinity") as proxy:
            texts = [passages.take() for _ in range(typists)]
            stopped = replicas[0]
            gone = f"127.0.0.1:{stopped.port}"
            keystrokes, wall = asyncio.run(type_through(proxy.url, texts, seconds, seconds / 3, stopped))
    finally:
        for replica in replicas:
            replica.stop()
    before = {k.typist: k.upstream for k in keystrokes if k.at < seconds / 3 and k.status == 200}
    after_stop = [k for k in keystrokes if k.at > seconds / 3 + 5]  # after it has finished and exited
    after = {k.typist: k.upstream for k in after_stop if k.status == 200}
    moved = [t for t in before if before[t] != after.get(t)]
    return {
        "typists": typists,
        "errors": sum(k.status != 200 for k in keystrokes),
        "sessions_on_the_stopped_replica": sum(1 for u in before.values() if u == gone),
        "sessions_moved": len(moved),
        "moved_sessions_all_from_the_stopped_replica": all(before[t] == gone for t in moved),
        "keystrokes_after_the_stop_by_its_sessions": sum(
            1 for k in after_stop if k.status == 200 and before.get(k.typist) == gone
        ),
        "keystrokes_per_s": sum(k.status == 200 for k in keystrokes) / wall,
    }


def report(results: dict, moved: dict) -> str:
    lines = [f"{'cache':8s} {'mode':12s} {'keystrokes/s':>13s} {'p50 ms':>8s} {'p99 ms':>8s} {'cache hits':>11s}"]
    for cache, modes in results.items():
        for mode, r in modes.items():
            lines.append(
                f"{cache:8s} {mode:12s} {r['keystrokes_per_s']:13.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
                f"{r['cache_hit_ratio']:11.1%}"
            )
        a, rr, one = modes["affinity"], modes["round_robin"], modes["single"]
        speed, tail = a["keystrokes_per_s"] / rr["keystrokes_per_s"], a["p99_ms"] / rr["p99_ms"]
        points = 100 * (a["cache_hit_ratio"] - one["cache_hit_ratio"])
        errors = sum(r["errors"] for r in modes.values())
        lines.append(
            f"{cache:8s} affinity / round robin: {speed:.2f}x keystrokes/s, {tail:.2f}x p99; "
            f"hit ratio {points:+.1f} points from one replica's; errors {errors}"
        )
    lines.append(
        f"failover (affinity, default cache, {moved['typists']} typists, one of 3 replicas stopped): "
        f"{moved['errors']} errors; {moved['sessions_moved']} sessions moved, "
        f"{moved['sessions_on_the_stopped_replica']} were on the stopped replica "
        f"(all from it: {moved['moved_sessions_all_from_the_stopped_replica']}); "
        f"its sessions typed {moved['keystrokes_after_the_stop_by_its_sessions']} keystrokes on the survivors"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest", help="model tag in the BentoML store")
    parser.add_argument("--seconds", type=float, default=10, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three modes, in alternating order")
    args = parser.parse_args(argv)
    passages = Passages(typing_words(wikitext2_corpus()))
    results = {}
    for cache, (cache_mb, typists) in CACHES.items():
        print(f"{cache} cache (NEXTWORD_STATE_CACHE_MB={cache_mb}), {typists} typists, {REPLICAS} replicas")
        results[cache] = compare(args.model, cache_mb, typists, passages, args.seconds, args.rounds)
    print("failover")
    moved = failover(args.model, CACHES["default"][1], passages, max(args.seconds, 20))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    FAILOVER_RESULTS.write_text(json.dumps(moved, indent=2) + "\n")
    print(report(results, moved))
    return 0


if __name__ == "__main__":
    sys.exit(main())
