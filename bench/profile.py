"""Where a worker's time goes under load: py-spy samples, by thread and by the library at the top of each stack.

Usage::

    python -m bench.profile --model nextword:latest [--clients 64] [--seconds 8] [--env NEXTWORD_DIRECT_ROUTE=off]

Starts the service, loads ``/predict_next`` with one input per request from
wrk (as ``bench.run``), measures each thread's CPU time per request (psutil),
then records the worker process with py-spy (a dev
dependency; it needs the right to trace the process, as root here). Prints
the share of samples per thread (the event loop, the model thread) and,
of the event loop's, per library: the library whose code was running,
that is the innermost frame's, so time in the json module called from
BentoML counts as json. Idle threads are left out.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from bench.launcher import REPO, Server
from bench.run import one_input, wrk

# (library, pattern on a frame's file path); the first that matches names it.
LIBRARIES = [
    ("BentoML", r"/(bentoml|_bentoml_impl|_bentoml_sdk)/"),
    ("uvicorn", r"/uvicorn/"),
    ("starlette", r"/starlette/"),
    ("prometheus-client", r"/prometheus_client/"),
    ("pydantic", r"/pydantic(_core)?/"),
    ("OpenTelemetry", r"/opentelemetry/"),
    ("asyncio / uvloop", r"/(asyncio|uvloop)/|/selectors\.py"),
    ("json", r"/json/"),
    ("this project", r"/(service|models|bench)/"),
    ("torch", r"/torch/"),
    ("Python's standard library", r"/lib/python3\.\d+/(?!site-packages/)"),
]
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+):\d+\)$")
# A thread blocked in one of these counts as idle: py-spy's own idle detection misses such waits.
WAITING = re.compile(r"/(threading|queue)\.py$|/concurrent/futures/thread\.py$")


def worker_pid(server: Server) -> int:
    """The BentoML worker: the server's descendant that runs the service (it imports it in its own process)."""
    children = psutil.Process(server.process.pid).children(recursive=True)
    workers = [c for c in children if any("worker" in part for part in c.cmdline())]
    if len(workers) != 1:
        raise RuntimeError(f"expected one worker process, found {[c.cmdline() for c in children]}")
    return workers[0].pid


def cpu_per_request(pid: int, url: str, clients: int, seconds: float) -> tuple[float, dict[str, float]]:
    """One wrk run without the profiler: requests/s, and each busy thread's CPU ms per request (psutil)."""
    worker = psutil.Process(pid)
    before = {t.id: t.user_time + t.system_time for t in worker.threads()}
    rps = wrk(url, one_input(), clients, seconds)["rps"]
    after = {t.id: t.user_time + t.system_time for t in worker.threads()}
    used = {t: after[t] - before.get(t, 0.0) for t in after}
    requests = rps * seconds
    loop = used.pop(pid)  # the main thread, whose id is the process's, runs the event loop
    return rps, {"event loop": loop / requests * 1000, "busiest other thread": max(used.values()) / requests * 1000}


def library(file: str) -> str:
    for name, pattern in LIBRARIES:
        if re.search(pattern, file):
            return name
    return "other"


def shares(raw: str) -> tuple[Counter, Counter]:
    """Samples per thread, and the event loop's samples per library, from py-spy's raw (collapsed) output."""
    threads: Counter = Counter()
    loop_libraries: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")  # thread: "thread (TID): NAME"
        name = thread.partition(": ")[2]
        frames = [f for f in frames if FRAME.match(f)]
        if frames and WAITING.search(FRAME.match(frames[-1])["file"]):
            continue
        kind = "event loop" if name == "MainThread" else "model thread" if name.startswith("nextword-model") else name
        threads[kind] += int(count)
        if kind == "event loop" and frames:
            loop_libraries[library(FRAME.match(frames[-1])["file"])] += int(count)
    return threads, loop_libraries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rate", type=int, default=400, help="py-spy samples per second")
    parser.add_argument("--keep-raw", help="also write py-spy's raw samples to this file")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server, repeatable")
    args = parser.parse_args(argv)
    env = {"NEXTWORD_MODEL": args.model, **dict(item.split("=", 1) for item in args.env)}
    py_spy = Path(sys.executable).parent / "py-spy"
    with Server(env=env) as server, tempfile.TemporaryDirectory() as folder:
        url = server.url + "/predict_next"
        wrk(url, one_input(), args.clients, 2)  # warm-up
        pid = worker_pid(server)
        quiet_rps, cpu_ms = cpu_per_request(pid, url, args.clients, args.seconds)
        raw = Path(folder) / "raw.txt"
        load = subprocess.Popen(  # wrk runs a little longer than py-spy records
            [sys.executable, "-c", f"from bench.run import wrk, one_input; print(wrk({url!r}, one_input(), "
             f"{args.clients}, {args.seconds + 2})['rps'])"],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1)
        command = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(args.seconds))]
        command += ["--rate", str(args.rate), "--format", "raw", "--threads", "--full-filenames", "--output", str(raw)]
        subprocess.run(command, check=True, capture_output=True)
        rps = float(load.communicate()[0])
        threads, loop = shares(raw.read_text())
        if args.keep_raw:
            Path(args.keep_raw).write_text(raw.read_text())
    total, loop_total = sum(threads.values()), sum(loop.values())
    print(
        f"without the profiler: {quiet_rps:.0f} req/s; CPU per request: the event loop {cpu_ms['event loop']:.3f} ms, "
        f"the busiest other thread (the model thread) {cpu_ms['busiest other thread']:.3f} ms"
    )
    print(f"{args.clients} clients, one input per request, {rps:.0f} req/s; {total} samples at {args.rate} Hz")
    for name, count in threads.most_common():
        print(f"  {name:28s} {count / total:6.1%}")
    print("the event loop's samples, by the library running:")
    for name, count in loop.most_common():
        print(f"  {name:28s} {count / loop_total:6.1%}")
    print("(py-spy slows the worker: compare shares, not the req/s above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
