"""The launcher that tests and benchmarks start servers with: ports, restarts, and cleanup."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench import launcher
from bench.launcher import Server, free_port

HTTP_SERVER = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"]


def test_free_ports_are_free_and_outside_the_kernels_range_for_connections() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        port = free_port()
        assert 10_000 <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free indeed


def test_a_server_whose_port_was_taken_starts_again_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real = launcher.free_port
        monkeypatch.setattr(launcher, "free_port", lambda: next(ports, None) or real())
        with Server(command=HTTP_SERVER, health="/") as server:
            assert server.port != busy
            assert httpx.get(server.url + "/", timeout=10).status_code == 200
            home = Path(server.home)
        assert server.process.poll() is not None and not home.exists()  # stopped, its home removed


def test_a_server_that_fails_for_another_reason_is_not_restarted() -> None:
    command = [sys.executable, "-c", "raise SystemExit('no such model')"]
    with pytest.raises(RuntimeError, match="no such model"), Server(command=command, health="/"):
        pass


# A benchmark that starts a server, which starts a child of its own, and waits: what a time limit
# interrupts mid-run.
BENCHMARK = """
import signal, sys, time
from bench.launcher import Server
signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal: a background job starts ignoring it
SERVER = (
    "import subprocess, sys, runpy; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
    "sys.argv = ['http.server', '--bind', '127.0.0.1', sys.argv[1]]; "
    "runpy.run_module('http.server', run_name='__main__')"
)
with Server(command=[sys.executable, "-c", SERVER, "{port}"], health="/") as server:
    print(server.process.pid, flush=True)
    time.sleep(300)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_benchmark_interrupted_mid_run_stops_its_server_and_the_servers_children(signal_name: str) -> None:
    command = [sys.executable, "-c", BENCHMARK]
    with subprocess.Popen(command, cwd=launcher.REPO, stdout=subprocess.PIPE, text=True) as run:
        try:
            assert run.stdout is not None
            group = os.getpgid(int(run.stdout.readline()))  # the server's own group: it and the child it started
            run.send_signal(getattr(signal, signal_name))
            run.wait(timeout=60)
        finally:
            run.kill()  # a no-op once it has exited
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and group_alive(group):
        time.sleep(0.1)
    assert not group_alive(group), "a process of the server's group outlived the interrupted benchmark"


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)  # signal 0: only whether any process of the group is there
    except ProcessLookupError:
        return False
    return True
