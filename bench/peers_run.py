"""The service against its peers: the same stored model behind a plain FastAPI app, LitServe, Ray Serve and Triton.

Usage::

    python -m bench.peers_run --model nextword:latest [--duration 5] [--rounds 5]

The servers are measured in interleaved rounds, A B C ... A B C ..., one
server running at a time, with the same load generator (wrk, as
``bench.run``), so a drift of this machine's speed hits each alike. Each
peer's batching is tuned first: a short sweep over batch size and wait at 64
clients, the best kept and printed. Ray Serve and Triton (PyTriton) run from
their own environment, ``--peers-python`` (``.venv-peers``, which ``make
bench-peers`` makes); Triton is sent its own protocol's body (KServe v2,
``bench.peers.kserve``) with the same inputs. Then, with the same servers,
the serving stack's share of CPU per request (``bench.serving_cpu``) and
generation against the peers (``bench.peers_generation``). Writes
``bench/results/peers.json`` and a plot, ``bench/results/peers.png``
(requests/s against clients, per server).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import peers_generation, serving_cpu
from bench.launcher import REPO, Server
from bench.peers.kserve import MODEL_PATH, infer_body
from bench.run import one_input, wrk

CLIENTS = (1, 8, 32, 64)
# nextword_bentoml_route: the service with NEXTWORD_DIRECT_ROUTE=off, to show what the direct route gains.
SERVERS = ("nextword", "nextword_bentoml_route", "plain_fastapi", "litserve", "ray_serve", "triton")
PEERS_PYTHON = ".venv-peers/bin/python"


@dataclass(frozen=True)
class Tunable:
    """A peer whose batching is swept: its options by (batch size, wait), and where it is asked."""

    sweep: tuple[tuple[int, float], ...]  # (max batch size, longest wait in s); the peer's default first
    options: Callable[[int, float], tuple[str, ...]]
    health: str
    own_environment: bool  # runs from --peers-python


TUNABLE = {
    "litserve": Tunable(  # LitServe's own default is no batching
        ((1, 0.0), (8, 0.0005), (16, 0.001), (64, 0.001), (64, 0.005), (128, 0.01)),
        lambda b, t: ("--max-batch-size", str(b), "--batch-timeout", str(t)),
        "/health",
        own_environment=False,
    ),
    "ray_serve": Tunable(  # @serve.batch's defaults: 10 requests, 10 ms
        ((10, 0.01), (8, 0.0005), (16, 0.001), (64, 0.001), (64, 0.005)),
        lambda b, t: ("--max-batch-size", str(b), "--batch-wait", str(t)),
        "/readyz",
        own_environment=True,
    ),
    # The dynamic batcher's default wait is 0: whatever is queued. Triton counts rows, not requests,
    # and refuses a request of more rows than its max batch: each setting must admit the 32-input load.
    "triton": Tunable(
        ((64, 0.0), (64, 0.0005), (64, 0.001), (64, 0.005), (128, 0.001)),
        lambda b, t: ("--max-batch-size", str(b), "--queue-delay-us", str(round(t * 1e6))),
        "/v2/models/nextword/ready",  # the server is ready before the model is bound
        own_environment=True,
    ),
}


def peer(name: str, model: str, peers_python: str, *options: str) -> Server:
    tunable = TUNABLE.get(name)
    python = peers_python if tunable is not None and tunable.own_environment else sys.executable
    command = [python, "-m", f"bench.peers.{name}", "--model", model, "--port", "{port}", *options]
    return Server(command=command, health=tunable.health if tunable is not None else "/readyz")


GENERATION_BATCHING = (32, 0.001)  # each peer's batcher for whole generations: up to 32 requests, 1 ms wait


def predict_starts(
    model: str, peers_python: str, kept: dict[str, tuple[int, float]]
) -> dict[str, Callable[[], Server]]:
    """Every server as it serves /predict_next, each tunable peer with its kept batching."""
    return {
        "nextword": lambda: Server(env={"NEXTWORD_MODEL": model}),
        "nextword_bentoml_route": lambda: Server(env={"NEXTWORD_MODEL": model, "NEXTWORD_DIRECT_ROUTE": "off"}),
        "plain_fastapi": lambda: peer("plain_fastapi", model, peers_python),
    } | {name: partial(peer, name, model, peers_python, *TUNABLE[name].options(*kept[name])) for name in TUNABLE}


def generation_starts(model: str, peers_python: str) -> dict[str, Callable[[], Server]]:
    """Every server as it serves /generate: the service's engine; each peer batching whole generations."""
    options = {name: TUNABLE[name].options(*GENERATION_BATCHING) for name in TUNABLE}
    return {
        "nextword": lambda: Server(env={"NEXTWORD_MODEL": model}),
        "plain_fastapi": lambda: peer("plain_fastapi", model, peers_python),
        "litserve": lambda: peer("litserve", model, peers_python, *options["litserve"], "--api", "generate"),
        "ray_serve": lambda: peer("ray_serve", model, peers_python, *options["ray_serve"]),
        "triton": lambda: peer("triton", model, peers_python, *options["triton"]),
    }


def path_and_body(name: str, inputs: int) -> tuple[str, dict]:
    """Where a server is asked, and with what: the service's body, or Triton's own with the same inputs."""
    body = one_input(inputs)
    if name == "triton":
        item = body["inputs"][0]
        return MODEL_PATH, infer_body([item["text"]] * inputs, item["top_k"])
    return "/predict_next", body


def tune(name: str, model: str, peers_python: str, seconds: float) -> tuple[tuple[int, float], dict]:
    """Each sweep setting at 64 clients; the one with the most requests/s and no errors."""
    tunable, found = TUNABLE[name], {}
    path, body = path_and_body(name, 1)
    for batch_size, wait in tunable.sweep:
        with peer(name, model, peers_python, *tunable.options(batch_size, wait)) as server:
            wrk(server.url + path, body, 64, 2)  # warm-up
            run = wrk(server.url + path, body, 64, seconds)
        found[(batch_size, wait)] = run["rps"] if not run["errors"] else 0.0
        print(
            f"  {name}: max batch {batch_size}, wait {wait * 1000:g} ms: {run['rps']:.0f} req/s, {run['errors']} errors"
        )
    best = max(found, key=found.get)
    return best, {f"{b}/{t}": rps for (b, t), rps in found.items()}


def summary(runs: list[dict]) -> dict:
    rps = [r["rps"] for r in runs]
    return {
        "rps_median": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms_median": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers_run", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest", help="model tag in the BentoML store")
    parser.add_argument("--duration", type=float, default=5, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "peers.json"))
    parser.add_argument("--generation-seconds", type=float, default=10, help="seconds per generation run")
    parser.add_argument("--cpu-seconds", type=float, default=8, help="seconds per serving-CPU run")
    parser.add_argument(
        "--peers-python", default=PEERS_PYTHON, help="the Python of Ray Serve's and Triton's environment"
    )
    args = parser.parse_args(argv)
    kept, sweeps = {}, {}
    for name in TUNABLE:
        print(f"tuning {name}'s batching (64 clients, one input per request):")
        kept[name], sweeps[name] = tune(name, args.model, args.peers_python, args.duration)
        print(f"  kept: max batch {kept[name][0]}, wait {kept[name][1] * 1000:g} ms")

    loads = [("1 input", 1, c) for c in CLIENTS] + [("32 inputs", 32, 8)]
    runs: dict[str, dict[str, list[dict]]] = {s: {f"{kind}@{c}": [] for kind, _, c in loads} for s in SERVERS}
    starts = predict_starts(args.model, args.peers_python, kept)
    # One server at a time (LitServe's idle worker loop alone takes a fifth of a core), in rounds.
    for round_number in range(1, args.rounds + 1):
        for name, start in starts.items():
            with start() as server:
                path, body = path_and_body(name, 1)
                wrk(server.url + path, body, 64, 2)  # warm-up
                for kind, inputs, clients in loads:
                    path, body = path_and_body(name, inputs)
                    runs[name][f"{kind}@{clients}"].append(wrk(server.url + path, body, clients, args.duration))
        print(f"  round {round_number} of {args.rounds} done")

    results = {
        "model": args.model,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "sweeps_rps_at_64": sweeps,
        "batching": {name: {"max_batch_size": b, "wait_s": t} for name, (b, t) in kept.items()},
        "servers": {name: {load: summary(r) for load, r in loads_runs.items()} for name, loads_runs in runs.items()},
    }
    s = results["servers"]
    results["ratios"] = {
        f"nextword_over_{other}_{load}": s["nextword"][load]["rps_median"] / s[other][load]["rps_median"]
        for other in SERVERS[1:]
        for load in ("1 input@1", "1 input@64", "32 inputs@8")
    }
    peers = SERVERS[2:]
    best = max(peers, key=lambda name: s[name]["1 input@64"]["rps_median"])
    results["best_peer_at_64"] = best
    print("the serving stack's share of CPU per request:")
    results["serving_cpu"] = serving_cpu.compare(starts, path_and_body, args.cpu_seconds, min(args.rounds, 2))
    print("generation against the peers (mixed 5- and 200-token load):")
    results["generation"] = peers_generation.compare(
        generation_starts(args.model, args.peers_python), args.generation_seconds, min(args.rounds, 3)
    )
    results["targets"] = {
        "rps_at_64_over_best_peer": s["nextword"]["1 input@64"]["rps_median"] / s[best]["1 input@64"]["rps_median"],
        "p50_at_1_over_best_peer": s["nextword"]["1 input@1"]["p50_ms_median"]
        / min(s[name]["1 input@1"]["p50_ms_median"] for name in peers),
    }
    print(report(results))
    print(serving_cpu.report(results["serving_cpu"]))
    print(peers_generation.report(results["generation"]))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    plot(results, output.with_suffix(".png"))
    print(f"wrote {output} and {output.with_suffix('.png')}")
    return 0


def report(r: dict) -> str:
    lines = [
        "",
        f"/predict_next, medians of {r['rounds']} interleaved rounds (min-max), {r['duration_s']:g} s each",
        "  load              server                  req/s (min-max)        p50 ms   p99 ms  errors",
    ]
    for load in r["servers"]["nextword"]:
        for name in SERVERS:
            m = r["servers"][name][load]
            span = f"({m['rps_min']:.0f}-{m['rps_max']:.0f})"
            lines.append(
                f"  {load:16s}  {name:22s}  {m['rps_median']:6.0f} {span:15s}  {m['p50_ms_median']:7.1f}"
                f"  {m['p99_ms_median']:7.1f}  {m['errors']:6d}"
            )
    ratios = {key.replace("nextword_over_", "").replace(" ", "_"): value for key, value in r["ratios"].items()}
    lines += ["", "nextword's median req/s over each server's (1 input at 1 and 64 clients; 32 inputs at 8)"]
    for name in SERVERS[1:]:
        lines.append(
            f"  over {name:22s}  {ratios[f'{name}_1_input@1']:5.2f}  {ratios[f'{name}_1_input@64']:5.2f}"
            f"  {ratios[f'{name}_32_inputs@8']:5.2f}"
        )
    targets = r["targets"]
    lines += [
        "",
        f"targets (best peer at 64 clients: {r['best_peer_at_64']})",
        f"  req/s at 64 clients over the best peer's:  {targets['rps_at_64_over_best_peer']:.2f}  [>= 1.5]",
        f"  p50 at 1 client over the lowest peer p50:  {targets['p50_at_1_over_best_peer']:.2f}  [<= 0.8]",
    ]
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name in SERVERS:
        points = [(c, r["servers"][name][f"1 input@{c}"]) for c in CLIENTS]
        axes.errorbar(
            [c for c, _ in points],
            [m["rps_median"] for _, m in points],
            yerr=[
                [m["rps_median"] - m["rps_min"] for _, m in points],
                [m["rps_max"] - m["rps_median"] for _, m in points],
            ],
            marker="o",
            capsize=3,
            label=name,
        )
    axes.set_xscale("log", base=2)
    axes.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
    axes.set_xlabel("clients (one input per request)")
    axes.set_ylabel("requests/s (median, min-max)")
    axes.set_title(f"/predict_next, the same model ({r['model']})")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
