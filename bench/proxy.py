"""nginx (Debian's package) in front of several replicas on loopback: round robin, or affinity by session key.

Affinity is nginx's own consistent hashing (ketama) on the ``X-Session-ID``
header: a person's requests reach the replica that caches their text's
states, and adding or removing a replica moves only about 1/N of the
sessions. A request without the header is hashed on its own random request
id, so those are spread as round robin spreads them. Our POST routes have no
side effects, so a request that a stopping replica refused is passed to the
next one (``non_idempotent``): a person whose replica goes away loses only
their cached prefix. Each answer says which replica served it
(``X-Upstream``), for the benchmark and the tests.

Usage::

    with Nginx([server.port for server in replicas], "affinity") as proxy:
        httpx.post(f"{proxy.url}/predict_next", json=..., headers={"x-session-id": "typist-7"})
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import httpx

from bench.launcher import free_port, stop_on_termination

Policy = Literal["affinity", "round_robin"]
SESSION_HEADER = "x-session-id"
UPSTREAM_HEADER = "x-upstream"

FRAME = """
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
{http}
}}
"""
BALANCING = """
    # The session key, or (none sent) the request's own random id: spread like round robin.
    map $http_x_session_id $session_key {{
        "" $request_id;
        default $http_x_session_id;
    }}
    upstream nextword {{
        {balance}
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2m;
        location / {{
            proxy_pass http://nextword;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;  # /generate_stream's events as they come
            proxy_read_timeout 120s;
            # The API has no side effects: a request a stopping replica refused goes to the next one.
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
"""


def balancing(port: int, upstream_ports: list[int], policy: Policy) -> str:
    """The ``http`` block that balances ``upstream_ports`` by ``policy`` on ``port``."""
    balance = "hash $session_key consistent;" if policy == "affinity" else "# round robin, nginx's default"
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in upstream_ports)
    return BALANCING.format(port=port, balance=balance, servers=servers)


class NginxProcess:
    """nginx on a free loopback port, unprivileged, with ``http_block(port)`` as its ``http`` block, until stopped."""

    def __init__(self, http_block: Callable[[int], str]) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed: apt-get install nginx-light")
        self.folder = Path(tempfile.mkdtemp(prefix="nextword-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = self.folder / "nginx.conf"
        config.write_text(FRAME.format(folder=self.folder, http=http_block(self.port)))
        command = [binary, "-c", str(config), "-p", str(self.folder), "-g", "daemon off;"]
        stop_on_termination()  # so a benchmark's SIGTERM reaches this process's __exit__ and stops nginx
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self.errors()}")
            try:
                httpx.get(f"{self.url}/livez", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"nginx not listening after {timeout}s: {self.errors()}")

    def errors(self) -> str:
        log = self.folder / "error.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> NginxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Nginx(NginxProcess):
    """nginx balancing ``upstream_ports`` by ``policy``."""

    def __init__(self, upstream_ports: list[int], policy: Policy) -> None:
        super().__init__(lambda port: balancing(port, upstream_ports, policy))
