"""The launcher that tests and benchmarks start servers with: ports, restarts, and cleanup."""

from __future__ import annotations

import socket
import sys
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
