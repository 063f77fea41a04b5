"""What a recipe costs to serve: in-process ``/predict_next`` time per batch, one model against another.

The models issue bounds a new default's serving cost per query at 1.5x the
old one's, at batch 1 and 128. On a shared, noisy machine only an
interleaved comparison tells: the two models answer the same batch in
turn (A B A B ...), through the service's own engine (``Engine.inline``) (tokenizing,
scoring, building the answers; no state cache, every prefix cold), and
the medians are compared. Usage::

    python -m bench.model_cost nextword:OLD nextword:latest [--calls 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from bench.run import PREFIX
from models.device import pick_dtype, precision_name
from service.engine.engine import Engine, EngineConfig
from service.engine.types import NextWordQuery
from service.settings import SETTINGS

BATCHES = (1, 128)


def median_ms(engines: list[Engine], batch: int, calls: int) -> list[float]:
    """Median ms of one batch for each engine, called in turn ``calls`` times each."""
    inputs = [NextWordQuery(PREFIX, 5)] * batch
    times: list[list[float]] = [[] for _ in engines]
    for engine in engines:
        engine.run_predict_next(inputs)  # warm
    for _ in range(calls):
        for engine, spent in zip(engines, times, strict=True):
            started = time.perf_counter()
            engine.run_predict_next(inputs)
            spent.append(time.perf_counter() - started)
    return [statistics.median(spent) * 1000 for spent in times]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_cost", description=__doc__.split("\n")[0])
    parser.add_argument("baseline", help="model tag to compare against, e.g. nextword:<older version>")
    parser.add_argument("candidate", help="model tag whose cost is measured, e.g. nextword:latest")
    parser.add_argument("--calls", type=int, default=200, help="calls per model at batch 1 (a tenth at 128)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the service gives batches 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    dtype = pick_dtype(SETTINGS.precision, cpu)
    config = EngineConfig(precision=precision_name(dtype))
    engines = [Engine.inline(tag, config) for tag in (args.baseline, args.candidate)]
    print(f"in process, {args.threads} torch thread(s), {dtype}, medians of interleaved calls")
    print("  batch   baseline ms   candidate ms   cost ratio [<= 1.5]")
    for batch in BATCHES:
        base, candidate = median_ms(engines, batch, args.calls if batch == 1 else max(args.calls // 10, 5))
        print(f"  {batch:5d}  {base:12.2f}  {candidate:13.2f}  {candidate / base:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
