"""Start ``bentoml serve`` as a subprocess on a free loopback port.

Used by the tests, the benchmark and the load test, which all talk to the real
server over HTTP rather than to the service object in process.

Each server gets a ``BENTOML_HOME`` of its own whose ``models`` links to the
real store (``service.serve`` says why), so servers never wipe each other's
metrics.

What a benchmark starts, it stops, however the benchmark ends: a server runs
in its own process group, which ``stop()`` kills whole (a Ray cluster, LitServe's
workers); SIGTERM (a time limit, ``kill``) ends the process as Ctrl-C does,
through every ``with Server(...)`` and ``finally``, where Python would
otherwise die at once and leave its servers running; and a server still
running at exit is stopped then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

import httpx

from service.serve import private_home, store_home

REPO = Path(__file__).resolve().parents[1]


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
PORT_TRIES = 3  # a server whose port was taken meanwhile starts again on another


def free_port() -> int:
    """A loopback port free now, below the range the kernel hands to outgoing connections.

    The server binds it later, so another process could take it meanwhile: a port
    outside the ephemeral range is never picked by the kernel for a connection,
    and ``Server`` starts again on another port if its own was taken.
    """
    try:
        low = int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10_000, max(10_001, low))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_on_termination() -> None:
    """Make SIGTERM raise ``SystemExit`` in the main thread, as SIGINT raises KeyboardInterrupt, unless
    the program handles SIGTERM itself; call it before starting anything that must be stopped."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, exit_on_signal)


def exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


RUNNING: set[Server] = set()  # started and not yet stopped: stopped at exit


@atexit.register
def stop_running() -> None:
    for server in list(RUNNING):
        server.stop()


def port_was_taken(output: str) -> bool:
    return "address already in use" in output.lower() or "errno 98" in output.lower()


def wait_until_ready(
    url: str, process: subprocess.Popen, timeout: float, output=lambda: "", health: str = "/readyz"
) -> None:
    """Poll ``url`` + ``health`` until it answers 200; raise if ``process`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{output()}")
        try:
            if httpx.get(f"{url}{health}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"server not ready after {timeout}s:\n{output()}")


class Server:
    """A ``bentoml serve TARGET`` subprocess, or another server's ``command`` (``{port}`` filled
    in) that answers 200 on ``health`` when ready, run in ``cwd`` with this environment less the
    variables in ``unset``, plus ``env``; ``stop()`` it when done."""

    def __init__(
        self,
        target: str = "service.service:NextWord",
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        health: str = "/readyz",
        cwd: Path = REPO,
        unset: tuple[str, ...] = (),
    ) -> None:
        self.health = health
        self.cwd = cwd
        self.command = command or [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ]
        inherited = {name: value for name, value in os.environ.items() if name not in unset}
        self.env = {**inherited, **(env or {})}
        self._start()

    def _start(self) -> None:
        stop_on_termination()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = private_home(store_home(self.env))
        self.log = tempfile.NamedTemporaryFile(prefix="nextword-server-", suffix=".log", delete=False)  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [part.format(port=self.port) for part in self.command],
                cwd=self.cwd,
                env={**self.env, "BENTOML_HOME": self.home},
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() can reach every child
            )
        except BaseException:
            self.log.close()
            shutil.rmtree(self.home, ignore_errors=True)
            raise
        RUNNING.add(self)

    def wait_ready(self, timeout: float = 120) -> Server:
        for attempt in range(1, PORT_TRIES + 1):
            try:
                wait_until_ready(self.url, self.process, timeout, self.output, self.health)
                return self
            except RuntimeError:  # it exited: start again on another port if its own was taken
                if attempt == PORT_TRIES or not port_was_taken(self.output()):
                    raise
                self.stop()
                self._start()
        raise AssertionError("unreachable")

    def output(self, limit: int | None = 5000) -> str:
        """The server's log so far: its last ``limit`` characters, or all of it."""
        text = Path(self.log.name).read_text(errors="replace")
        return text if limit is None else text[-limit:]

    def stop(self) -> None:
        """Stop the server, then any process it left behind (LitServe's workers outlive their parent)."""
        RUNNING.discard(self)
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Server:
        try:
            return self.wait_ready()
        except BaseException:  # not ready: do not leave the server running
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
