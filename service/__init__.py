"""The nextword BentoML service.

OpenMP's wait policy is set here, before any module of the service imports
torch: libgomp reads ``OMP_WAIT_POLICY`` once, when torch loads it. With the
default (active) policy a decode step's threads spin at every barrier; when
another process takes one of the cores, the thread left waiting spins through
the other's time slices. With PASSIVE threads sleep at barriers instead
(the figures: docs/benchmarks.md, "Measurements behind the code"). A value
set by the user wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
