"""Benchmark of the generation engine: continuous batching, the state cache, streaming, overload.

Usage::

    python -m bench.engine --model nextword:latest [--duration 10] [--output bench/results/engine.json]

Load comes from an asyncio client (aiohttp, a BentoML dependency) in this
process, since the runs need what wrk cannot give: bodies that differ by
client, latency by kind of request, time to the first streamed token. It
shares the 2 cores with the server, so figures are compared as ratios of
runs made the same way, one after the other. Servers are started with
``bentoml serve`` on loopback, one at a time:

- mixed /generate load (half the clients ask 5 tokens, half 200) and a
  uniform one (20 tokens), continuous vs request-level batching;
- a person typing a 200-word text word by word (one client), and 64 such
  typists at once, with the state cache on and off;
- time to the first streamed token at 32 streaming clients;
- overload: 2,000 concurrent /generate requests of 256 tokens against one
  worker, after a saturated run that measures the full-batch token rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiohttp
import httpx
import psutil
import torch

from bench.launcher import REPO, Server
from bench.load import Client, Sample, closed_loop, latency_ms, percentile, post, stream
from bench.run import metric_totals
from models.bundle import load_bundle
from models.device import pick_dtype
from models.scoring import compile_scorer
from service.settings import SETTINGS
from training.download import wikitext2_corpus

PROMPT = "The game was released in"
TYPED_WORDS = 200
TYPISTS = 64
OVERLOAD_REQUESTS = 2000
OVERLOAD_TOKENS = 256


def generate_client(url: str, kind: str, tokens: int) -> Client:
    body = {"inputs": [{"prompt": PROMPT, "max_new_tokens": tokens, "temperature": 0.8, "top_k": 40}]}
    return lambda session, n: post(session, url + "/generate", body, kind)


def generate_load(url: str, mixed: bool, seconds: float) -> dict:
    if mixed:
        clients = [generate_client(url, "short", 5) for _ in range(16)]
        clients += [generate_client(url, "long", 200) for _ in range(16)]
    else:
        clients = [generate_client(url, "uniform", 20) for _ in range(32)]
    run = asyncio.run(closed_loop(clients, seconds))
    result = {"tokens_per_s": run.tokens_per_s(), "errors": sum(s.status != 200 for s in run.samples)}
    for kind in ("short", "long") if mixed else ("uniform",):
        result[kind] = latency_ms(run.samples, kind)
    return result


def typing_words(corpus: Path) -> list[str]:
    """The test split's words, headings and blank lines left out."""
    lines = (corpus / "test.txt").read_text(encoding="utf-8").splitlines()
    return [word for line in lines if line.strip() and not line.strip().startswith("=") for word in line.split()]


def one_typist(url: str, words: list[str], passages: int = 3) -> dict:
    """One client types TYPED_WORDS words, one request a word; latency by prefix length, over passages."""
    by_length: dict[int, list[float]] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for p in range(passages):
            start = 1000 + p * 3 * TYPED_WORDS
            for n in range(1, TYPED_WORDS + 1):
                body = {"inputs": [{"text": " ".join(words[start : start + n]), "top_k": 5}]}
                started = time.perf_counter()
                client.post("/predict_next", json=body).raise_for_status()
                by_length.setdefault(n, []).append(time.perf_counter() - started)

    def around(n: int) -> float:
        return statistics.median(v for m in range(n - 2, n + 3) if m in by_length for v in by_length[m]) * 1000

    short, long = around(5), around(TYPED_WORDS - 2)
    return {"ms_at_5": short, "ms_at_200": long, "ratio_200_over_5": long / short}


def many_typists(url: str, words: list[str], seconds: float) -> dict:
    def typist(i: int) -> Client:
        start = 20000 + i * TYPED_WORDS
        return lambda session, n: post(
            session,
            url + "/predict_next",
            {"inputs": [{"text": " ".join(words[start : start + 1 + n % TYPED_WORDS]), "top_k": 5}]},
            "typing",
        )

    run = asyncio.run(closed_loop([typist(i) for i in range(TYPISTS)], seconds))
    ok = [s for s in run.samples if s.status == 200]
    return {"rps": len(ok) / run.wall_s, **latency_ms(run.samples), "errors": len(run.samples) - len(ok)}


def streaming(url: str, seconds: float) -> dict:
    body = {"inputs": [{"prompt": PROMPT, "max_new_tokens": 20, "temperature": 0.8, "top_k": 40}]}
    clients = [lambda session, n: stream(session, url + "/generate_stream", body, "stream")] * 32
    run = asyncio.run(closed_loop(clients, seconds))
    firsts = [s.first_token_s for s in run.samples if s.first_token_s is not None]
    return {
        "ttft_p50_ms": percentile(firsts, 50) * 1000,
        "ttft_p99_ms": percentile(firsts, 99) * 1000,
        "tokens_per_s": run.tokens_per_s(),
        "errors": sum(s.status != 200 for s in run.samples),
    }


def best_ms(run: Callable[[], object], repeats: int = 5) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def prefill_cost(model_tag: str, tokens: int = TYPED_WORDS) -> dict:
    """In process: ms to run a prefix one token a step (as served) and in one pass, at batch 1 and 32."""
    cpu = torch.device("cpu")
    bundle = load_bundle(model_tag, cpu, pick_dtype(SETTINGS.precision, cpu))
    scorer = compile_scorer(bundle.model, bundle.config.log_probabilities)
    torch.set_num_threads(SETTINGS.threads_per_worker(spare_loop_core=True))
    result = {}
    with torch.inference_mode():
        for batch in (1, 32):
            ids = torch.randint(2, len(bundle.vocab), (batch, tokens))
            lengths = torch.full((batch,), tokens)
            state = bundle.model.zero_state(batch)
            result[f"batch_{batch}"] = {
                "one_token_a_step_ms": best_ms(partial(scorer.prefill, ids, lengths, state, state[0, 0])),
                "one_pass_ms": best_ms(partial(bundle.model.encode, ids, state)),
            }
    return result


def worker_rss_mb(server: Server) -> float:
    """Resident memory of the server's largest process (the worker holding the model)."""
    processes = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    return max(p.memory_info().rss for p in processes) / 2**20


def overload(server: Server, seconds: float, requests: int = OVERLOAD_REQUESTS) -> dict:
    """Saturated tokens/s, then ``requests`` concurrent requests at once; what came of them."""
    url = server.url
    body = {"inputs": [{"prompt": PROMPT, "max_new_tokens": OVERLOAD_TOKENS, "temperature": 0.8, "top_k": 40}]}
    # Saturated: more clients than running slots, for long enough to pass the start-up of the batch.
    before = metric_totals(url)
    started = time.perf_counter()
    asyncio.run(closed_loop([generate_client(url, "saturated", OVERLOAD_TOKENS) for _ in range(160)], seconds))
    saturated = (
        metric_totals(url)["nextword_tokens_generated_total{}"] - before["nextword_tokens_generated_total{}"]
    ) / (time.perf_counter() - started)
    time.sleep(2)
    rss_before = worker_rss_mb(server)

    async def burst() -> tuple[list[Sample], float]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
            started = time.perf_counter()
            samples = await asyncio.gather(
                *(post(session, url + "/generate", body, "overload") for _ in range(requests))
            )
            return list(samples), time.perf_counter() - started

    samples, wall = asyncio.run(burst())
    time.sleep(5)
    rss_after = worker_rss_mb(server)
    asyncio.run(burst())  # the same again: does memory keep growing, or was the first a high-water mark?
    time.sleep(5)
    rss_after_second = worker_rss_mb(server)
    statuses: dict[str, int] = {}
    for s in samples:
        status = "429 shed" if s.refusal == "shed" else str(s.status)
        statuses[status] = statuses.get(status, 0) + 1
    # Admitted: not refused at once. A request shed from the queue was admitted and did not succeed.
    admitted = [s for s in samples if s.status != 429 or s.refusal == "shed"]
    shed = [s for s in admitted if s.refusal == "shed"]
    failed = [s for s in admitted if s.status != 200]
    succeeded = [s for s in samples if s.status == 200]
    last_success = max((s.seconds for s in succeeded), default=wall)
    goodput = sum(s.tokens for s in succeeded) / last_success
    return {
        "saturated_tokens_per_s": saturated,
        "statuses": statuses,
        "admitted": len(admitted),
        "succeeded_share_of_admitted": len(succeeded) / len(admitted) if admitted else 0.0,
        "shed": len(shed),
        "slowest_failure_s": max((s.seconds for s in failed), default=0.0),  # shed or timed out
        "goodput_tokens_per_s": goodput,
        "goodput_over_saturated": goodput / saturated,
        "slowest_success_s": max((s.seconds for s in succeeded), default=0.0),
        "wall_s": wall,
        "worker_rss_mb_before": rss_before,
        "worker_rss_mb_after": rss_after,
        "rss_after_over_before": rss_after / rss_before,
        "worker_rss_mb_after_second_burst": rss_after_second,
        "rss_second_over_first": rss_after_second / rss_after,
    }


SECTIONS = ("batching", "typing", "overload")


def run_section(section: str, model: str, words: list[str], d: float, overload_requests: int) -> dict:
    """One part of the benchmark alone, for a quick look after a change."""
    env = {"NEXTWORD_MODEL": model}
    if section == "batching":
        with Server(env=env) as server:
            return {"mixed": generate_load(server.url, True, d), "streaming": streaming(server.url, d)}
    if section == "typing":
        with Server(env=env) as server:
            return {"one": one_typist(server.url, words), "many": many_typists(server.url, words, d)}
    with Server(env=env) as server:
        return overload(server, max(d, 12), overload_requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest", help="model tag in the BentoML store")
    parser.add_argument("--duration", type=float, default=10, help="seconds per closed-loop run")
    parser.add_argument("--corpus", default=None, help="folder with test.txt for the typing runs (default: as serve)")
    parser.add_argument("--overload-requests", type=int, default=OVERLOAD_REQUESTS, help="concurrent requests")
    parser.add_argument("--only", choices=SECTIONS, help="run one section and print its JSON")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "engine.json"))
    args = parser.parse_args(argv)
    words = typing_words(Path(args.corpus) if args.corpus else wikitext2_corpus())
    env = {"NEXTWORD_MODEL": args.model}
    d = args.duration
    if args.only:
        print(json.dumps(run_section(args.only, args.model, words, d, args.overload_requests), indent=2))
        return 0
    results: dict = {"model": args.model, "duration_s": d, "prefill_200_tokens": prefill_cost(args.model)}

    for policy in ("continuous", "request"):
        with Server(env={**env, "NEXTWORD_GENERATE_BATCHING": policy}) as server:
            results[f"mixed_{policy}"] = generate_load(server.url, mixed=True, seconds=d)
            results[f"uniform_{policy}"] = generate_load(server.url, mixed=False, seconds=d)
            if policy == "continuous":
                results["streaming"] = streaming(server.url, d)
    for cache in ("auto", "0"):
        name = "on" if cache == "auto" else "off"
        with Server(env={**env, "NEXTWORD_STATE_CACHE_MB": cache}) as server:
            results[f"typing_one_cache_{name}"] = one_typist(server.url, words)
            results[f"typing_{TYPISTS}_cache_{name}"] = many_typists(server.url, words, d)
    with Server(env=env) as server:
        results["overload"] = overload(server, max(d, 12), args.overload_requests)

    mc, mr = results["mixed_continuous"], results["mixed_request"]
    results["ratios"] = {
        "mixed_short_p99_request_over_continuous": mr["short"]["p99_ms"] / mc["short"]["p99_ms"],
        "mixed_tokens_continuous_over_request": mc["tokens_per_s"] / mr["tokens_per_s"],
        "uniform_tokens_continuous_over_request": results["uniform_continuous"]["tokens_per_s"]
        / results["uniform_request"]["tokens_per_s"],
        "typing_200_over_5_cache_on": results["typing_one_cache_on"]["ratio_200_over_5"],
        "typing_200_over_5_cache_off": results["typing_one_cache_off"]["ratio_200_over_5"],
        f"typists_{TYPISTS}_cache_on_over_off": results[f"typing_{TYPISTS}_cache_on"]["rps"]
        / results[f"typing_{TYPISTS}_cache_off"]["rps"],
    }
    print(report(results))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.output}")
    return 0


def report(r: dict) -> str:
    lines = ["", "/generate, 32 clients (mixed: 16 ask 5 tokens, 16 ask 200; uniform: 20 tokens each)"]
    lines.append("  batching     load      tokens/s  short p50 ms  short p99 ms  long p50 ms  errors")
    for policy in ("continuous", "request"):
        m = r[f"mixed_{policy}"]
        lines.append(
            f"  {policy:11s}  mixed    {m['tokens_per_s']:9.0f}  {m['short']['p50_ms']:12.1f}  "
            f"{m['short']['p99_ms']:12.1f}  {m['long']['p50_ms']:11.1f}  {m['errors']:6d}"
        )
    for policy in ("continuous", "request"):
        u = r[f"uniform_{policy}"]
        lines.append(
            f"  {policy:11s}  uniform  {u['tokens_per_s']:9.0f}  {u['uniform']['p50_ms']:12.1f}  "
            f"{u['uniform']['p99_ms']:12.1f}  {'':11s}  {u['errors']:6d}"
        )
    s = r["streaming"]
    lines += [
        "",
        "/generate_stream, 32 clients, 20 tokens each",
        f"  time to first token: p50 {s['ttft_p50_ms']:.1f} ms, p99 {s['ttft_p99_ms']:.1f} ms; "
        f"{s['tokens_per_s']:.0f} tokens/s; {s['errors']} errors",
        "",
        f"prefill of {TYPED_WORDS} tokens in process, ms: one token a step (as served) / one pass"
        + "".join(
            f"; batch {b}: {p['one_token_a_step_ms']:.1f} / {p['one_pass_ms']:.1f}"
            for b, p in zip((1, 32), r["prefill_200_tokens"].values(), strict=True)
        ),
        "",
        f"typing /predict_next (a {TYPED_WORDS}-word text from test.txt, one request a word)",
        "  cache   one typist: ms at 5 words  at 200  ratio    64 typists: req/s  p50 ms  p99 ms  errors",
    ]
    for name in ("on", "off"):
        one, many = r[f"typing_one_cache_{name}"], r[f"typing_{TYPISTS}_cache_{name}"]
        lines.append(
            f"  {name:5s}  {one['ms_at_5']:29.2f}  {one['ms_at_200']:6.2f}  {one['ratio_200_over_5']:5.2f}"
            f"  {many['rps']:21.0f}  {many['p50_ms']:6.1f}  {many['p99_ms']:6.1f}  {many['errors']:6d}"
        )
    o = r["overload"]
    lines += [
        "",
        f"overload: {sum(o['statuses'].values())} concurrent /generate requests of {OVERLOAD_TOKENS} tokens,"
        " one worker",
        f"  saturated (160 clients): {o['saturated_tokens_per_s']:.0f} tokens/s",
        f"  statuses: {o['statuses']}; admitted (not refused at once): {o['admitted']}",
        f"  succeeded / admitted: {o['succeeded_share_of_admitted']:.2f}  [>= 0.90]"
        f"  (shed from the queue: {o.get('shed', 0)}; slowest failure: {o.get('slowest_failure_s', 0.0):.1f} s)",
        f"  goodput: {o['goodput_tokens_per_s']:.0f} tokens/s = {o['goodput_over_saturated']:.2f} of saturated"
        "  [>= 0.80]",
        f"  slowest success: {o['slowest_success_s']:.1f} s (timeout 60 s); whole burst {o['wall_s']:.1f} s",
        f"  worker memory: {o['worker_rss_mb_before']:.0f} MB before, {o['worker_rss_mb_after']:.0f} MB after"
        f" ({o['rss_after_over_before']:.2f}x)  [<= 1.10]",
        f"  after a second burst: {o['worker_rss_mb_after_second_burst']:.0f} MB"
        f" ({o['rss_second_over_first']:.2f}x the first)",
    ]
    ratios = r["ratios"]
    lines += [
        "",
        "ratios (targets in brackets)",
        f"  mixed: short p99, request-level / continuous:  {ratios['mixed_short_p99_request_over_continuous']:.2f}"
        "  [>= 5]",
        f"  mixed: tokens/s, continuous / request-level:   {ratios['mixed_tokens_continuous_over_request']:.2f}"
        "  [>= 1.0]",
        f"  uniform: tokens/s, continuous / request-level: {ratios['uniform_tokens_continuous_over_request']:.2f}"
        "  [>= 1.0]",
        f"  typing, cache on: latency at 200 / at 5 words: {ratios['typing_200_over_5_cache_on']:.2f}  [<= 1.2]",
        f"  typing, cache off: latency at 200 / at 5 words: {ratios['typing_200_over_5_cache_off']:.2f}",
        f"  {TYPISTS} typists, req/s cache on / off:          {ratios[f'typists_{TYPISTS}_cache_on_over_off']:.2f}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
