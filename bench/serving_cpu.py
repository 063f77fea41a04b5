"""The serving stack's share of each server's CPU per request: everything but the model, ``make profile``'s method.

Usage (``bench.peers_run`` calls it; alone, with the batching that run kept)::

    python -m bench.serving_cpu --model nextword:latest [--clients 64] [--seconds 8] [--rounds 2]

Every server answers the same ``/predict_next`` load (64 clients unless
told, one input per request, wrk), one server at a time. Its CPU per request is the CPU time
(psutil, user + system) of its whole process tree over a run without the
profiler: a BentoML server's arbiter and worker, Ray's proxy, replica,
controller and raylet, Triton's C++ server and its Python backend stubs. The
model's part comes from py-spy samples of every Python process in that tree
during a second run: a process's CPU counts as the model's in the share of
its busy samples whose stack is inside the shared ``Predictor`` (this
project's ``models/``, ``service/engine/inference.py`` and the job modules
it joins, or torch), so work
every server does alike (tokenizing, the forward pass, top-k) is the model's,
and the rest (HTTP, parsing, batching, hand-offs between threads and
processes, metrics) is the serving stack's. Processes py-spy cannot read
(Triton's server, Ray's raylet) never run the ``Predictor``: all their CPU is
the stack's.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil

from bench.launcher import REPO, Server
from bench.profile import FRAME, WAITING
from bench.run import wrk

CLIENTS = 64
# A frame of the shared Predictor's work: the work every server does alike for one input.
MODEL_FRAME = re.compile(
    rf"{re.escape(str(REPO))}/(models/|service/engine/(inference|loaded|next_words|generation|scoring)\.py)|/torch/"
)
PROCESS = re.compile(r"^process (\d+):")


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    """Each live process's CPU time so far (user + system, its own threads only)."""
    used = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        used[process.pid] = times.user + times.system
    return used


def model_fractions(raw: str) -> dict[int, float]:
    """Per process, the share of its busy samples inside the Predictor, from py-spy's raw output.

    With ``--subprocesses`` each stack starts with the chain of processes down
    to the sampled one ("process PID:command"), then the thread, then frames.
    """
    busy: Counter = Counter()
    model: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        parts = stack.split(";")
        pid = int([match[1] for p in parts if (match := PROCESS.match(p))][-1])
        frames = [match["file"] for p in parts if (match := FRAME.match(p))]
        if frames and WAITING.search(frames[-1]):
            continue  # a thread blocked on a lock or a queue
        busy[pid] += int(count)
        if any(MODEL_FRAME.search(file) for file in frames):
            model[pid] += int(count)
    return {pid: model[pid] / busy[pid] for pid in busy}


def measure(server: Server, path: str, body: object, seconds: float, rate: int, clients: int = CLIENTS) -> dict:
    """CPU ms per request, the model's and the stack's, for one started server."""
    url = server.url + path
    wrk(url, body, clients, 2)  # warm-up: lazily started processes and threads exist by now
    processes = process_tree(server.process.pid)
    before = cpu_seconds(processes)
    run = wrk(url, body, clients, seconds)
    after = cpu_seconds(processes)
    used = {pid: after[pid] - before[pid] for pid in after if pid in before}

    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.txt"
        load = subprocess.Popen(  # wrk runs a little longer than py-spy records
            [sys.executable, "-c", f"from bench.run import wrk; wrk({url!r}, {body!r}, {clients}, {seconds + 2})"],
            cwd=REPO,
        )
        time.sleep(1)
        py_spy = Path(sys.executable).parent / "py-spy"
        command = [str(py_spy), "record", "--pid", str(server.process.pid), "--subprocesses", "--rate", str(rate)]
        command += ["--duration", str(int(seconds)), "--format", "raw", "--threads", "--full-filenames"]
        subprocess.run([*command, "--output", str(raw)], check=True, capture_output=True)
        load.wait()
        fractions = model_fractions(raw.read_text())
    if not any(fractions.values()):
        raise RuntimeError("no sample inside the Predictor: py-spy could not read the process that runs it")
    requests = run["rps"] * seconds
    total = sum(used.values()) / requests * 1000
    model = sum(cpu * fractions.get(pid, 0.0) for pid, cpu in used.items()) / requests * 1000
    return {
        "rps": run["rps"],
        "errors": run["errors"],
        "processes": len(used),
        "cpu_ms_per_request": total,
        "model_ms_per_request": model,
        "stack_ms_per_request": total - model,
        "stack_share": (total - model) / total,
    }


def compare(
    starts: dict[str, Callable[[], Server]],
    path_and_body: Callable[[str, int], tuple[str, dict]],
    seconds: float,
    rounds: int,
    rate: int = 100,
    clients: int = CLIENTS,
) -> dict:
    """Each server, in interleaved rounds; medians."""
    runs: dict[str, list[dict]] = {name: [] for name in starts}
    for round_number in range(1, rounds + 1):
        for name, start in starts.items():
            with start() as server:
                runs[name].append(measure(server, *path_and_body(name, 1), seconds, rate, clients))
        print(f"  serving CPU round {round_number} of {rounds} done")
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
    return {name: {"clients": clients, **m} for name, m in medians.items()}


def report(results: dict) -> str:
    clients = next(iter(results.values()))["clients"]
    lines = [
        "",
        f"CPU per request at {clients} clients, one input per request (the server's whole process tree), medians",
        f"  {'server':22s} {'req/s':>6s} {'processes':>9s} {'CPU ms':>7s} {'model ms':>9s} {'stack ms':>9s}"
        f" {'stack share':>11s}",
    ]
    for name, r in results.items():
        lines.append(
            f"  {name:22s} {r['rps']:6.0f} {r['processes']:9.0f} {r['cpu_ms_per_request']:7.3f}"
            f" {r['model_ms_per_request']:9.3f} {r['stack_ms_per_request']:9.3f} {r['stack_share']:11.1%}"
        )
    smallest = min(results, key=lambda name: results[name]["stack_share"])
    lines.append(f"  smallest stack share: {smallest}  [target: nextword]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.peers_run import PEERS_PYTHON, SERVERS, path_and_body, predict_starts

    parser = argparse.ArgumentParser(prog="python -m bench.serving_cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument(
        "--batching", default=str(REPO / "bench" / "results" / "peers.json"), help="the peers' kept batching"
    )
    parser.add_argument("--peers-python", default=PEERS_PYTHON)
    parser.add_argument("--servers", help="a comma-separated subset of: " + ", ".join(SERVERS))
    args = parser.parse_args(argv)
    batching = json.loads(Path(args.batching).read_text())["batching"]
    kept = {name: (b["max_batch_size"], b["wait_s"]) for name, b in batching.items()}
    starts = predict_starts(args.model, args.peers_python, kept)
    if args.servers:
        starts = {name: starts[name] for name in args.servers.split(",")}
    results = compare(starts, path_and_body, args.seconds, args.rounds, args.rate, args.clients)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
