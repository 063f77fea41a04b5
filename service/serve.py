"""``bentoml serve`` with a BentoML home of its own, so no other server can wipe its metrics.

Usage::

    python -m service.serve [bentoml serve options, e.g. --port 3000]   # what make serve runs

Every ``bentoml serve`` empties ``$BENTOML_HOME/prometheus_multiproc_dir`` as
it starts, before it even imports the service (BentoML 1.4.39,
``ensure_prometheus_dir``): a second server sharing the home, or one that
fails to start, leaves a running server's ``/metrics`` answering 200 with 0
bytes from then on. So each server here runs with a private home in a
temporary folder whose ``models`` links to the real store: the models are
shared, the metrics folder is not. The folder is removed when the server ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

SERVICE = "service.service:NextWord"
FAILED_START = "nextword-failed-start"  # written into the private home by a worker that cannot serve


def store_home(env: dict[str, str]) -> Path:
    """The BentoML home that holds the model store: ``BENTOML_HOME``, else ~/bentoml."""
    return Path(env.get("BENTOML_HOME") or Path.home() / "bentoml")


def private_home(store: Path) -> str:
    """A new temporary BentoML home whose ``models`` and ``bentos`` are the store's."""
    home = tempfile.mkdtemp(prefix="nextword-server-home-")
    for kind in ("models", "bentos"):
        (store / kind).mkdir(parents=True, exist_ok=True)
        (Path(home) / kind).symlink_to((store / kind).absolute(), target_is_directory=True)
    return home


def mark_failed_start(message: str) -> None:
    """Leave the reason a worker cannot serve where ``main`` finds it (the server's home)."""
    home = os.environ.get("BENTOML_HOME")
    if home:
        Path(home, FAILED_START).write_text(message + "\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    home = private_home(store_home(dict(os.environ)))
    try:
        command = [sys.executable, "-m", "bentoml", "serve", SERVICE, *args]
        server = subprocess.Popen(command, env={**os.environ, "BENTOML_HOME": home})
        for stop in (signal.SIGTERM, signal.SIGINT):  # a stop for this process is one for the server
            signal.signal(stop, lambda number, _frame: server.send_signal(number))
        status = server.wait()
        return 3 if Path(home, FAILED_START).exists() else status
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
