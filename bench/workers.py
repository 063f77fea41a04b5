"""One worker against two on this machine, with the load generator pinned to one core.

Usage::

    python -m bench.workers --model nextword:latest [--rounds 2] [--duration 8]

wrk runs on core 0 only (``taskset -c 0``), so the server's workers have the
other core to themselves plus what wrk leaves of core 0. The two settings
alternate (1, 2, 1, 2, ...), each round on a freshly started server; loads:
one input per request at 64 clients, and 32 inputs per request at 8 clients.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.launcher import Server
from bench.run import one_input, wrk

LOADS = (("1 input, 64 clients", 1, 64), ("32 inputs, 8 clients", 32, 8))
WRK_CORE = "0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8)
    args = parser.parse_args(argv)
    runs: dict[tuple[int, str], list[float]] = {(w, name): [] for w in (1, 2) for name, _, _ in LOADS}
    for _ in range(args.rounds):
        for workers in (1, 2):
            with Server(env={"NEXTWORD_MODEL": args.model, "NEXTWORD_WORKERS": str(workers)}) as server:
                url = server.url + "/predict_next"
                wrk(url, one_input(), 64, 2, cpus=WRK_CORE)  # warm-up
                for name, inputs, clients in LOADS:
                    run = wrk(url, one_input(inputs), clients, args.duration, cpus=WRK_CORE)
                    runs[(workers, name)].append(run["rps"])
    print(f"wrk on core {WRK_CORE}, {args.rounds} alternating rounds of {args.duration:g} s; req/s, each round")
    for name, _, _ in LOADS:
        one, two = runs[(1, name)], runs[(2, name)]
        each = {w: ", ".join(f"{r:.0f}" for r in rps) for w, rps in ((1, one), (2, two))}
        ratio = statistics.median(two) / statistics.median(one)
        print(f"  {name:22s} 1 worker {each[1]};  2 workers {each[2]};  2 / 1 (medians) {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
