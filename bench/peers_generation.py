"""Generation against the peers: a mixed load of short and long continuations, each server in its natural way.

The service runs its step-level engine (continuous batching). Every peer
runs the same ``Predictor`` by request: its own batcher merges requests and
each batch is decoded to its end (``Predictor.generate``), which is how a
server without an engine of its own serves generation. The load is
``bench.engine``'s mixed one: 16 clients asking 5 tokens and 16 asking 200,
closed loop, temperature 0.8; Triton is sent its own protocol's body
(``bench.peers.kserve``). Reported per server, as medians of interleaved
rounds: the short requests' p50 and p99, and tokens/s.

Usage (``bench.peers_run`` calls it; alone)::

    python -m bench.peers_generation --model nextword:latest [--seconds 10] [--rounds 3] [--servers a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable

import aiohttp

from bench.launcher import Server
from bench.load import Sample, closed_loop, latency_ms
from bench.peers.kserve import GENERATE_PATH, generate_body

PROMPT = "The game was released in"
KINDS = {"short": 5, "long": 200}
CLIENTS_PER_KIND = 16
TEMPERATURE = 0.8


def request_for(server: str, tokens: int) -> tuple[str, dict]:
    if server == "triton":
        return GENERATE_PATH, generate_body([PROMPT], tokens, TEMPERATURE)
    return "/generate", {"inputs": [{"prompt": PROMPT, "max_new_tokens": tokens, "temperature": TEMPERATURE}]}


def generated_tokens(payload: bytes) -> int:
    """Tokens in an answer: the service's JSON list, or Triton's tensor of JSON documents."""
    answer = json.loads(payload)
    if isinstance(answer, dict):  # KServe v2
        return sum(len(json.loads(item)["tokens"]) for item in answer["outputs"][0]["data"])
    return sum(len(item["tokens"]) for item in answer)


async def post(session: aiohttp.ClientSession, url: str, body: dict, kind: str) -> Sample:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        payload = await response.read()
    tokens = generated_tokens(payload) if response.status == 200 else 0
    return Sample(kind, response.status, time.perf_counter() - started, tokens, started=started)


def mixed_load(server: str, url: str, seconds: float) -> dict:
    clients = []
    for kind, tokens in KINDS.items():
        path, body = request_for(server, tokens)
        for _ in range(CLIENTS_PER_KIND):
            clients.append(lambda session, n, path=path, body=body, kind=kind: post(session, url + path, body, kind))
    run = asyncio.run(closed_loop(clients, seconds))
    return {
        "tokens_per_s": run.tokens_per_s(),
        "errors": sum(s.status != 200 for s in run.samples),
        **{kind: latency_ms(run.samples, kind) for kind in KINDS},
    }


def compare(starts: dict[str, Callable[[], Server]], seconds: float, rounds: int) -> dict:
    """Each server's mixed load, in interleaved rounds; medians."""
    runs: dict[str, list[dict]] = {name: [] for name in starts}
    for round_number in range(1, rounds + 1):
        for name, start in starts.items():
            with start() as server:
                mixed_load(name, server.url, 2)  # warm-up
                runs[name].append(mixed_load(name, server.url, seconds))
        print(f"  generation round {round_number} of {rounds} done")
    return {
        name: {
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
            "short_p50_ms": statistics.median(r["short"]["p50_ms"] for r in rs),
            "short_p99_ms": statistics.median(r["short"]["p99_ms"] for r in rs),
            "long_p50_ms": statistics.median(r["long"]["p50_ms"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
        }
        for name, rs in runs.items()
    }


def report(results: dict) -> str:
    lines = [
        "",
        "mixed /generate load (16 clients x 5 tokens, 16 x 200), medians of interleaved rounds",
        f"  {'server':22s} {'tokens/s':>9s} {'short p50 ms':>13s} {'short p99 ms':>13s} {'long p50 ms':>12s} errors",
    ]
    for name, r in results.items():
        lines.append(
            f"  {name:22s} {r['tokens_per_s']:9.0f} {r['short_p50_ms']:13.1f} {r['short_p99_ms']:13.1f} "
            f"{r['long_p50_ms']:12.1f} {r['errors']:6d}"
        )
    peers = [name for name in results if name != "nextword"]
    best = min(peers, key=lambda name: results[name]["short_p99_ms"])
    ours = results["nextword"]
    lines += [
        f"  best peer by short-request p99: {best}",
        f"  its short p99 / ours: {results[best]['short_p99_ms'] / ours['short_p99_ms']:.1f}  [>= 5]",
        f"  our tokens/s / its:   {ours['tokens_per_s'] / results[best]['tokens_per_s']:.2f}  [>= 1.0]",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.peers_run import PEERS_PYTHON, generation_starts

    parser = argparse.ArgumentParser(prog="python -m bench.peers_generation", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers-python", default=PEERS_PYTHON)
    parser.add_argument("--servers", help="a comma-separated subset, nextword first: nextword,plain_fastapi")
    args = parser.parse_args(argv)
    starts = generation_starts(args.model, args.peers_python)
    if args.servers:
        starts = {name: starts[name] for name in args.servers.split(",")}
    results = compare(starts, args.seconds, args.rounds)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
