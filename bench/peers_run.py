"""The service against its peers: the same stored model behind LitServe and a plain FastAPI app.

Usage::

    python -m bench.peers_run --model nextword:latest [--duration 5] [--rounds 5]

The three servers are measured in interleaved rounds, A B C A B C ..., one
server running at a time, with the same load generator (wrk, as
``bench.run``), so a drift of this machine's speed hits each alike.
LitServe's batching is tuned first: a short sweep over batch size and
timeout at 64 clients, the best kept and printed. Writes
``bench/results/peers.json`` and a plot, ``bench/results/peers.png``
(requests/s against clients, per server).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench.launcher import REPO, Server
from bench.run import one_input, wrk

CLIENTS = (1, 8, 32, 64)
# (max_batch_size, batch_timeout in s): LitServe's own default is no batching (1, 0.0)
LITSERVE_SWEEP = ((1, 0.0), (8, 0.0005), (16, 0.001), (64, 0.001), (64, 0.005), (128, 0.01))
# nextword_bentoml_route: the service with NEXTWORD_DIRECT_ROUTE=off, to show what the direct route gains.
SERVERS = ("nextword", "nextword_bentoml_route", "plain_fastapi", "litserve")


def peer(name: str, model: str, *options: str) -> Server:
    command = [sys.executable, "-m", f"bench.peers.{name}", "--model", model, "--port", "{port}", *options]
    return Server(command=command, health="/health" if name == "litserve" else "/readyz")


def litserve_options(batch_size: int, timeout: float) -> tuple[str, ...]:
    return ("--max-batch-size", str(batch_size), "--batch-timeout", str(timeout))


def tune_litserve(model: str, seconds: float) -> tuple[tuple[int, float], dict]:
    """Each sweep setting at 64 clients; the one with the most requests/s and no errors."""
    found = {}
    for batch_size, timeout in LITSERVE_SWEEP:
        with peer("litserve", model, *litserve_options(batch_size, timeout)) as server:
            wrk(server.url + "/predict_next", one_input(), 64, 2)  # warm-up
            run = wrk(server.url + "/predict_next", one_input(), 64, seconds)
        found[(batch_size, timeout)] = run["rps"] if not run["errors"] else 0.0
        print(f"  max_batch_size={batch_size} batch_timeout={timeout}: {run['rps']:.0f} req/s, {run['errors']} errors")
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
    args = parser.parse_args(argv)
    print("tuning LitServe's batching (64 clients, one input per request):")
    (batch_size, timeout), sweep = tune_litserve(args.model, args.duration)
    print(f"  kept: max_batch_size={batch_size}, batch_timeout={timeout}")

    loads = [("1 input", one_input(), c) for c in CLIENTS] + [("32 inputs", one_input(32), 8)]
    runs: dict[str, dict[str, list[dict]]] = {s: {f"{kind}@{c}": [] for kind, _, c in loads} for s in SERVERS}
    starts = {
        "nextword": lambda: Server(env={"NEXTWORD_MODEL": args.model}),
        "nextword_bentoml_route": lambda: Server(env={"NEXTWORD_MODEL": args.model, "NEXTWORD_DIRECT_ROUTE": "off"}),
        "plain_fastapi": lambda: peer("plain_fastapi", args.model),
        "litserve": lambda: peer("litserve", args.model, *litserve_options(batch_size, timeout)),
    }
    # One server at a time (LitServe's idle worker loop alone takes a fifth of a core), in rounds.
    for round_number in range(1, args.rounds + 1):
        for name, start in starts.items():
            with start() as server:
                wrk(server.url + "/predict_next", one_input(), 64, 2)  # warm-up
                for kind, body, clients in loads:
                    run = wrk(server.url + "/predict_next", body, clients, args.duration)
                    runs[name][f"{kind}@{clients}"].append(run)
        print(f"  round {round_number} of {args.rounds} done")

    results = {
        "model": args.model,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "litserve_sweep_rps_at_64": sweep,
        "litserve_batching": {"max_batch_size": batch_size, "batch_timeout_s": timeout},
        "servers": {name: {load: summary(r) for load, r in loads_runs.items()} for name, loads_runs in runs.items()},
    }
    s = results["servers"]
    results["ratios"] = {
        f"nextword_over_{other}_{load}": s["nextword"][load]["rps_median"] / s[other][load]["rps_median"]
        for other in ("litserve", "plain_fastapi", "nextword_bentoml_route")
        for load in ("1 input@1", "1 input@64", "32 inputs@8")
    }
    print(report(results))
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
    lines += [
        "",
        "ratios of median req/s (targets in brackets)",
        f"  nextword / LitServe, 1 input, 64 clients:      {ratios['litserve_1_input@64']:.2f}  [>= 1.5]",
        f"  nextword / plain FastAPI, 1 input, 64 clients: {ratios['plain_fastapi_1_input@64']:.2f}  [>= 1.0]",
        f"  nextword / LitServe, 32 inputs, 8 clients:     {ratios['litserve_32_inputs@8']:.2f}",
        f"  nextword / plain FastAPI, 32 inputs, 8 clients: {ratios['plain_fastapi_32_inputs@8']:.2f}",
        f"  nextword / plain FastAPI, 1 input, 1 client:   {ratios['plain_fastapi_1_input@1']:.2f}",
        f"  direct route / BentoML's route, 1 input, 64 clients: {ratios['nextword_bentoml_route_1_input@64']:.2f}",
        f"  direct route / BentoML's route, 1 input, 1 client:   {ratios['nextword_bentoml_route_1_input@1']:.2f}",
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
