"""Reliability benchmarks: a noisy neighbour, and a soak at about 70% of saturation.

Usage::

    python -m bench.reliability noisy --model nextword:latest [--duration 10]
    python -m bench.reliability soak --model nextword:latest [--minutes 10]   # make soak

``noisy`` measures /predict_next and /generate with and without a CPU hog (a
busy loop, one core's worth) beside the server, in alternating rounds, and
prints loaded / quiet: a service whose threads wait for each other at every
OpenMP barrier falls off a cliff when one of its cores is taken; one that
does not falls roughly in proportion.

``soak`` finds the saturated request rate of a mix of both endpoints, then
offers about 70% of it at a fixed rate for the whole run, and reports
requests, errors, p99 latency and the worker's memory minute by minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bench.engine import PROMPT, worker_rss_mb
from bench.launcher import REPO, Server
from bench.load import Sample, closed_loop, latency_ms, post

PREDICT_BODY = {"inputs": [{"text": PROMPT, "top_k": 5}]}
GENERATE_BODY = {"inputs": [{"prompt": PROMPT, "max_new_tokens": 20, "temperature": 0.8, "top_k": 40}]}
HOG = "while True: pass"


def throughput(url: str, path: str, body: dict, clients: int, seconds: float) -> dict:
    client = lambda session, n: post(session, url + path, body, path)  # noqa: E731
    run = asyncio.run(closed_loop([client] * clients, seconds))
    ok = [s for s in run.samples if s.status == 200]
    return {"rps": len(ok) / run.wall_s, **latency_ms(run.samples), "errors": len(run.samples) - len(ok)}


def noisy(model: str, seconds: float, rounds: int = 2) -> dict:
    """Quiet and hogged runs, alternating; loaded / quiet per endpoint from the medians."""
    results: dict[str, dict[str, list[dict]]] = {}
    with Server(env={"NEXTWORD_MODEL": model}) as server:
        for _ in range(rounds):
            for hogged in (False, True):
                hog = subprocess.Popen([sys.executable, "-c", HOG]) if hogged else None
                try:
                    for path, body in (("/predict_next", PREDICT_BODY), ("/generate", GENERATE_BODY)):
                        runs = results.setdefault(path, {}).setdefault("hog" if hogged else "quiet", [])
                        runs.append(throughput(server.url, path, body, 32, seconds))
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
    summary = {}
    for path, runs in results.items():
        quiet = sorted(r["rps"] for r in runs["quiet"])[len(runs["quiet"]) // 2]
        loaded = sorted(r["rps"] for r in runs["hog"])[len(runs["hog"]) // 2]
        summary[path] = {"quiet_rps": quiet, "hog_rps": loaded, "loaded_over_quiet": loaded / quiet, "runs": runs}
    return summary


def soak(model: str, minutes: float, share: float = 0.7) -> dict:
    """A fixed-rate mix of both endpoints at ``share`` of the saturated rate; per-minute figures."""
    with Server(env={"NEXTWORD_MODEL": model}) as server:
        url = server.url
        mix = [("/predict_next", PREDICT_BODY)] * 4 + [("/generate", GENERATE_BODY)]  # 4 : 1
        clients = [lambda session, n, p=p, b=b: post(session, url + p, b, p) for p, b in mix * 8]
        run = asyncio.run(closed_loop(clients, 15))  # saturation, which also warms up
        saturated = sum(s.status == 200 for s in run.samples) / run.wall_s
        rate = share * saturated
        minutes_out = asyncio.run(fixed_rate(url, mix, rate, minutes, server))
    first = minutes_out[0]["worker_rss_mb"]
    return {
        "saturated_rps": saturated,
        "offered_rps": rate,
        "minutes": minutes_out,
        "errors": sum(m["errors"] for m in minutes_out),
        "memory_growth_after_first_minute": minutes_out[-1]["worker_rss_mb"] / first - 1,
    }


async def attempt(session: aiohttp.ClientSession, url: str, body: dict, kind: str) -> Sample:
    """``post``, with a failure to connect or to finish counted as an error (status 0), never raised."""
    started = time.perf_counter()
    try:
        return await post(session, url, body, kind)
    except (aiohttp.ClientError, TimeoutError):
        return Sample(kind, 0, time.perf_counter() - started)


async def fixed_rate(url: str, mix: list[tuple[str, dict]], rate: float, minutes: float, server: Server) -> list[dict]:
    """Open-loop load: one request every 1/rate s, whatever the answers; a row of figures per minute."""
    out: list[dict] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        started = time.perf_counter()
        pending: set[asyncio.Task[Sample]] = set()
        window: list[Sample] = []
        n = 0
        for minute in range(max(1, round(minutes))):
            minute_end = started + 60 * (minute + 1)
            while (now := time.perf_counter()) < minute_end:
                path, body = mix[n % len(mix)]
                task = asyncio.create_task(attempt(session, url + path, body, path))
                pending.add(task)
                task.add_done_callback(lambda t: (pending.discard(t), window.append(t.result())))
                n += 1
                await asyncio.sleep(max(0.0, started + n / rate - now))
            done, window[:] = list(window), []
            out.append(
                {
                    "minute": minute + 1,
                    "requests": len(done),
                    "errors": sum(s.status != 200 for s in done),
                    "p99_ms": latency_ms(done)["p99_ms"],
                    "worker_rss_mb": worker_rss_mb(server),
                }
            )
            print(json.dumps(out[-1]), flush=True)
        await asyncio.gather(*pending)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("noisy", "soak"))
    parser.add_argument("--model", default="nextword:latest", help="model tag in the BentoML store")
    parser.add_argument("--duration", type=float, default=10, help="noisy: seconds per run")
    parser.add_argument("--minutes", type=float, default=10, help="soak: minutes of load")
    parser.add_argument("--output", default=None, help="JSON file (default bench/results/<what>.json)")
    args = parser.parse_args(argv)
    result = noisy(args.model, args.duration) if args.what == "noisy" else soak(args.model, args.minutes)
    print(report(args.what, result))
    output = Path(args.output or REPO / "bench" / "results" / f"{args.what}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(f"wrote {output}")
    return 0


def report(what: str, r: dict) -> str:
    if what == "noisy":
        lines = [
            "",
            "a CPU hog beside the server (32 clients, median of the rounds)",
            "  endpoint        quiet req/s  hogged req/s  hogged / quiet",
        ]
        lines += [
            f"  {path:14s}  {m['quiet_rps']:11.0f}  {m['hog_rps']:12.0f}  {m['loaded_over_quiet']:14.2f}  [>= 0.40]"
            for path, m in r.items()
        ]
        return "\n".join(lines)
    lines = [
        "",
        f"soak: {r['offered_rps']:.0f} req/s offered (70% of the saturated {r['saturated_rps']:.0f}), "
        "/predict_next : /generate = 4 : 1",
        "  minute  requests  errors  p99 ms  worker MB",
    ]
    lines += [
        f"  {m['minute']:6d}  {m['requests']:8d}  {m['errors']:6d}  {m['p99_ms']:6.1f}  {m['worker_rss_mb']:9.0f}"
        for m in r["minutes"]
    ]
    lines.append(
        f"  errors: {r['errors']}  [0]; memory growth after the first minute: "
        f"{r['memory_growth_after_first_minute']:+.1%}  [< 5%]"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
