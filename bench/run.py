"""Benchmark: the model in process, the HTTP floor, and the service over HTTP.

Usage::

    python -m bench.run --model nextword:latest [--duration 10] [--output bench/results/bench.json]

Load comes from wrk (C, one thread, epoll; Debian package ``wrk``) with a Lua
script that POSTs a fixed JSON body, so the generator is not the bottleneck
on 2 cores. Servers are started with ``bentoml serve`` on loopback, one at a
time; batch sizes are read back from the server's own ``/metrics``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families

from bench.launcher import REPO, Server
from models.device import pick_dtype, precision_name
from service.engine.engine import Engine, EngineConfig
from service.engine.types import NextWordQuery
from service.settings import SETTINGS

PREFIX = "The game was released in North America on the same"  # 10 words
CLIENTS = (1, 8, 32, 64)
# A lone client's p50 moves by a fifth from round to round on this shared machine (one run: the
# service / (model + floor) ratio 0.88 to 1.23 over four rounds), so the median takes five.
ONE_CLIENT_ROUNDS = 5
IN_PROCESS_BATCHES = (1, 8, 32, 128)
GENERATE_TOKENS = 20
BATCHING_MODES = ("on", "adaptive", "off")  # NEXTWORD_BATCHING
GENERATE_BODY = {
    "inputs": [{"prompt": "The game was", "max_new_tokens": GENERATE_TOKENS, "temperature": 0.8, "top_k": 40}]
}


def in_process_limit(model_tag: str, precision: str, seconds: float) -> dict[int, float]:
    """Queries/s of the engine's predict_next (tokenize -> model -> top-k) by batch size.

    On every core: the model's own limit on this machine, not the share of
    the cores the service gives it beside its event loop.
    """
    torch.set_num_threads(os.cpu_count() or 1)
    engine = Engine.inline(model_tag, EngineConfig(precision=precision))
    results = {}
    for batch in IN_PROCESS_BATCHES:
        inputs = [NextWordQuery(PREFIX, 5)] * batch
        engine.run_predict_next(inputs)
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            engine.run_predict_next(inputs)
            calls += 1
        results[batch] = calls * batch / elapsed
    return results


class CachedQuery:
    """One batch-1 query whose prefix the state cache holds, as the service serves a repeat, timed in process."""

    def __init__(self, model_tag: str, precision: str) -> None:
        threads = SETTINGS.threads_per_worker(spare_loop_core=True)  # as the service's small batches
        config = EngineConfig(precision=precision, threads=threads, predict_threads=threads, state_cache_mb=64)
        self.engine = Engine.inline(model_tag, config)
        self.inputs = [NextWordQuery(PREFIX, 5)]
        self.engine.run_predict_next(self.inputs)

    def median_ms(self, seconds: float, idle_s: float = 0.0) -> float:
        """Median ms of the query, run back to back, or each after ``idle_s`` idle.

        A lone client's requests reach the model with the HTTP round trip in
        between, and on a shared machine the idle core loses the model's
        weights from its caches meanwhile: measured here, a query after 2 ms
        idle took 2-3x as long as back to back. ``idle_s`` reproduces that gap.
        """
        times, started = [], time.perf_counter()
        while time.perf_counter() - started < seconds:
            if idle_s:
                time.sleep(idle_s)
            begin = time.perf_counter()
            self.engine.run_predict_next(self.inputs)
            times.append(time.perf_counter() - begin)
        return statistics.median(times) * 1000


def one_client_rounds(server: Server, floor: Server, query: CachedQuery, seconds: float) -> dict:
    """At one client: the service, the floor and the model alone, in interleaved rounds (medians).

    The model alone runs back to back, and paced: after each query it idles
    for as long as that round's floor request took, as the service's model
    thread idles between a lone client's requests.
    """
    rounds: list[dict] = []
    for _ in range(ONE_CLIENT_ROUNDS):
        floor_1 = wrk(floor.url + "/predict_next", one_input(), 1, seconds)
        service_1 = wrk(server.url + "/predict_next", one_input(), 1, seconds)
        rounds.append(
            {
                "floor_p50_ms": floor_1["p50_ms"],
                "service_p50_ms": service_1["p50_ms"],
                "model_back_to_back_ms": query.median_ms(min(seconds, 3)),
                "model_paced_ms": query.median_ms(min(seconds, 3), idle_s=floor_1["p50_ms"] / 1000),
            }
        )
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    return {"rounds": rounds, **medians}


def wrk(url: str, body: object, connections: int, seconds: float, cpus: str | None = None) -> dict:
    """One wrk run (pinned to ``cpus``, taskset's list, if given); returns requests/s, p50/p99 latency (ms)
    and error counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(body, file)
    command = [
        *(["taskset", "-c", cpus] if cpus else []),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
        "-s",
        str(REPO / "bench" / "post.lua"),
        url,
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, env={"WRK_BODY_FILE": file.name}, check=True
    ).stdout
    Path(file.name).unlink()
    summary = json.loads(output.split("WRK_JSON ", 1)[1])
    return {
        "rps": summary["requests"] / (summary["duration_us"] / 1e6),
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "errors": summary["socket_errors"] + summary["status_errors"],
    }


def metric_totals(url: str) -> dict[str, float]:
    """Sums of the server's nextword_* samples, keyed by 'name{endpoint}'."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name.startswith("nextword_") and not sample.name.endswith("_bucket"):
                key = f"{sample.name}{{{sample.labels.get('endpoint', '')}}}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def measured(server: Server, path: str, body: object, connections: int, seconds: float, warm_up: bool = True) -> dict:
    """wrk (after a 2 s warm-up run), with the mean server batch size and tokens generated."""
    endpoint = path.strip("/")
    if warm_up:  # adaptive batching learns its latency from the first requests
        wrk(server.url + path, body, connections, 2)
    before = metric_totals(server.url)
    result = wrk(server.url + path, body, connections, seconds)
    after = metric_totals(server.url)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = delta(f"nextword_batch_size_count{{{endpoint}}}")
    result["mean_batch"] = delta(f"nextword_batch_size_sum{{{endpoint}}}") / batches if batches else 0.0
    result["generated_tokens_per_s"] = delta("nextword_tokens_generated_total{}") / seconds
    return result


def one_input(n: int = 1) -> dict:
    return {"inputs": [{"text": PREFIX, "top_k": 5}] * n}


# The same 10-word prefix, then a partly typed word to complete: the same model work as PREFIX.
COMPLETION_BODY = {"inputs": [{"text": PREFIX + " d", "top_k": 5, "complete": True}]}
COMPLETION_ROUNDS = 3


def completion_vs_plain(server: Server, seconds: float) -> dict:
    """Completion and plain requests at 1 and 32 clients, in interleaved rounds; medians per kind."""
    result: dict = {}
    for clients in (1, 32):
        runs: dict[str, list[dict]] = {"plain": [], "completion": []}
        for _ in range(COMPLETION_ROUNDS):
            runs["plain"].append(measured(server, "/predict_next", one_input(), clients, seconds, warm_up=False))
            runs["completion"].append(measured(server, "/predict_next", COMPLETION_BODY, clients, seconds, False))
        medians = {
            kind: {key: statistics.median(m[key] for m in ms) for key in ("rps", "p50_ms", "p99_ms")}
            for kind, ms in runs.items()
        }
        result[clients] = medians | {
            "p50_completion_over_plain": medians["completion"]["p50_ms"] / medians["plain"]["p50_ms"]
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest", help="model tag in the BentoML store")
    parser.add_argument("--duration", type=float, default=10, help="seconds per HTTP measurement")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "bench.json"))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    print(f"load generator: {version}, 1 thread, Lua POST body (bench/post.lua); {args.duration:g}s per run")

    dtype = pick_dtype(SETTINGS.precision, torch.device("cpu"))  # as the service will serve
    precision = precision_name(dtype)
    print(f"model: {args.model} in {precision} (NEXTWORD_PRECISION={SETTINGS.precision})")
    results: dict = {
        "model": args.model,
        "precision": precision,
        "load_generator": version,
        "duration_s": args.duration,
    }
    results["in_process_qps"] = in_process_limit(args.model, precision, min(args.duration, 5))
    query = CachedQuery(args.model, precision)
    env = {"NEXTWORD_MODEL": args.model}

    def predict(server: Server, clients: int) -> dict:
        return measured(server, "/predict_next", one_input(), clients, args.duration)

    # Both floors are up throughout, used at 64 clients (bench/floor_service.py).
    with Server("bench.floor_service:Floor", env) as floor, Server("bench.floor_service:BatchedFloor", env) as batched:
        for batching in BATCHING_MODES:
            with Server(env={**env, "NEXTWORD_BATCHING": batching}) as server:
                results[f"predict_batching_{batching}"] = {c: predict(server, c) for c in CLIENTS[:-1]}
                if batching == "on":
                    # The floors just before and just after the service's 64-client run:
                    # this machine's speed drifts by several % over minutes, and
                    # bracketing keeps the drift out of the service / floor ratios.
                    results["floor_1"] = predict(floor, 1)
                    results["floor_64"] = [predict(floor, 64)]
                    results["batched_floor_64"] = [predict(batched, 64)]
                    results["predict_batching_on"][64] = predict(server, 64)
                    results["batched_floor_64"].append(predict(batched, 64))
                    results["floor_64"].append(predict(floor, 64))
                else:
                    results[f"predict_batching_{batching}"][64] = predict(server, 64)
                # One client again, right after the 64-client burst: does batching still make it wait?
                results[f"predict_batching_{batching}_1_after_burst"] = measured(
                    server, "/predict_next", one_input(), 1, args.duration, warm_up=False
                )
                if batching == "on":
                    results["one_client"] = one_client_rounds(server, floor, query, args.duration / 2)
                    results["completion_vs_plain"] = completion_vs_plain(server, args.duration / 2)
                    results["predict_32_inputs_8_clients"] = measured(
                        server, "/predict_next", one_input(32), 8, args.duration
                    )
                    results["generate"] = {
                        c: measured(server, "/generate", GENERATE_BODY, c, args.duration) for c in (1, 32)
                    }

    on64, off64 = results["predict_batching_on"][64], results["predict_batching_off"][64]
    multi, one = results["predict_32_inputs_8_clients"], results["one_client"]
    floor_rps = statistics.mean(m["rps"] for m in results["floor_64"])
    batched_floor_rps = statistics.mean(m["rps"] for m in results["batched_floor_64"])
    results["ratios"] = {
        "service_over_floor_64": on64["rps"] / floor_rps,
        # What the batcher costs, and what the model costs beside it (the service's CPU and GIL).
        "batched_floor_over_floor_64": batched_floor_rps / floor_rps,
        "service_over_batched_floor_64": on64["rps"] / batched_floor_rps,
        "batching_on_over_off_64": on64["rps"] / off64["rps"],
        "batching_on_over_adaptive_64": on64["rps"] / results["predict_batching_adaptive"][64]["rps"],
        "multi_input_over_in_process_128": multi["rps"] * 32 / results["in_process_qps"][128],
        # At 1 client the service should cost little more than the model plus the bare HTTP stack.
        "p50_1_over_paced_model_plus_floor": one["service_p50_ms"] / (one["model_paced_ms"] + one["floor_p50_ms"]),
        "p50_1_over_back_to_back_model_plus_floor": one["service_p50_ms"]
        / (one["model_back_to_back_ms"] + one["floor_p50_ms"]),
        "completion_over_plain_p50_1": results["completion_vs_plain"][1]["p50_completion_over_plain"],
        "completion_over_plain_p50_32": results["completion_vs_plain"][32]["p50_completion_over_plain"],
    }
    print(report(results))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.output}")
    return 0


def report(r: dict) -> str:
    lines = ["", "in process (tokenize -> model -> top-5, 10-word prefix)", "  batch   queries/s"]
    lines += [f"  {b:5d}  {q:10.0f}" for b, q in r["in_process_qps"].items()]
    lines += [
        "",
        "over HTTP, /predict_next, one input per request",
        "  server              clients   req/s   p50 ms   p99 ms  mean batch  errors",
    ]

    def row(name: str, clients: int, m: dict, scale: int = 1) -> str:
        return (
            f"  {name:18s}  {clients:7d}  {m['rps'] * scale:6.0f}  {m['p50_ms']:7.1f}  {m['p99_ms']:7.1f}"
            f"  {m['mean_batch']:10.1f}  {m['errors']:6d}"
        )

    lines.append(row("HTTP floor", 1, r["floor_1"]))
    for name, key in (("HTTP floor", "floor_64"), ("batched floor", "batched_floor_64")):
        lines += [row(f"{name}, {when}", 64, m) for when, m in zip(("before", "after"), r[key], strict=True)]
    for batching in BATCHING_MODES:
        lines += [row(f"batching {batching}", c, m) for c, m in r[f"predict_batching_{batching}"].items()]
        lines.append(row(f"  {batching}, after 64", 1, r[f"predict_batching_{batching}_1_after_burst"]))
    m = r["predict_32_inputs_8_clients"]
    lines += [
        "",
        "  32 inputs/request  clients   req/s   p50 ms   p99 ms  mean batch  errors  queries/s",
        row("batching on", 8, m) + f"  {m['rps'] * 32:9.0f}",
    ]
    one = r["one_client"]
    lines += [
        "",
        f"/predict_next at 1 client, medians of {ONE_CLIENT_ROUNDS} interleaved rounds (p50 ms)",
        f"  HTTP floor {one['floor_p50_ms']:.2f}, service {one['service_p50_ms']:.2f}; in process, batch 1, its prefix"
        f" in the state cache: back to back {one['model_back_to_back_ms']:.2f}, paced {one['model_paced_ms']:.2f}",
    ]
    lines += [
        "",
        f"/predict_next, completing a word vs a plain request (medians of {COMPLETION_ROUNDS} interleaved rounds)",
        "  clients  kind        req/s   p50 ms   p99 ms",
    ]
    for clients, c in r["completion_vs_plain"].items():
        lines += [
            f"  {clients:7d}  {kind:10s}  {c[kind]['rps']:6.0f}  {c[kind]['p50_ms']:7.2f}  {c[kind]['p99_ms']:7.2f}"
            for kind in ("plain", "completion")
        ]
    lines += [
        "",
        f"/generate, {GENERATE_TOKENS} new tokens each",
        "  clients   req/s   tokens/s   p50 ms   p99 ms  mean batch  errors",
    ]
    lines += [
        f"  {c:7d}  {g['rps']:6.1f}  {g['generated_tokens_per_s']:9.0f}  {g['p50_ms']:7.1f}  {g['p99_ms']:7.1f}"
        f"  {g['mean_batch']:10.1f}  {g['errors']:6d}"
        for c, g in r["generate"].items()
    ]
    ratios = r["ratios"]
    lines += [
        "",
        "ratios (targets in brackets)",
        f"  service / HTTP floor at 64 clients:           {ratios['service_over_floor_64']:.2f}  [>= 0.85]",
        f"    batched floor / HTTP floor (the batcher):   {ratios['batched_floor_over_floor_64']:.2f}",
        f"    service / batched floor (the model):        {ratios['service_over_batched_floor_64']:.2f}",
        f"  batching on / off at 64 clients:              {ratios['batching_on_over_off_64']:.2f}  [> 1]",
        f"  batching on / BentoML adaptive at 64 clients: {ratios['batching_on_over_adaptive_64']:.2f}",
        f"  32 inputs/request / in-process at batch 128:  {ratios['multi_input_over_in_process_128']:.2f}  [>= 0.70]",
        f"  p50, 1 client / (paced model + floor):        {ratios['p50_1_over_paced_model_plus_floor']:.2f}  [<= 1.20]",
        f"  p50, 1 client / (back-to-back model + floor): {ratios['p50_1_over_back_to_back_model_plus_floor']:.2f}",
        f"  completion / plain p50 latency, 1 client:     {ratios['completion_over_plain_p50_1']:.2f}  [<= 1.20]",
        f"  completion / plain p50 latency, 32 clients:   {ratios['completion_over_plain_p50_32']:.2f}  [<= 1.20]",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
