"""Session affinity through a real proxy: three replicas of the real server behind Debian's nginx (bench.proxy).

The last test stops one replica, as Kubernetes stops a pod.

Needs ``nginx`` (``.ci/run`` installs ``nginx-light``); without it the tests
are skipped and say why, unless ``NEXTWORD_REQUIRE_NGINX=1`` (set by CI)
makes that a failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bench.launcher import Server
from bench.proxy import SESSION_HEADER, UPSTREAM_HEADER, Nginx
from tests.programs import require_program

pytestmark = pytest.mark.slow

SESSIONS = [f"person-{i}" for i in range(30)]
BODY = {"inputs": [{"text": "the game was rel", "top_k": 3, "complete": True}]}


@pytest.fixture(scope="module")
def replicas(tiny_model_tag: str) -> Iterator[list[Server]]:
    require_program("nginx", "nginx-light", "NEXTWORD_REQUIRE_NGINX")
    env = {"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_TORCH_THREADS": "1"}
    servers = [Server(env=env) for _ in range(3)]  # started side by side
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def served_by(proxy: Nginx, session: str | None) -> str:
    headers = {SESSION_HEADER: session} if session else {}
    response = httpx.post(f"{proxy.url}/predict_next", json=BODY, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers[UPSTREAM_HEADER]


def test_round_robin_spreads_one_session_over_every_replica(replicas: list[Server]) -> None:
    with Nginx([server.port for server in replicas], "round_robin") as proxy:
        assert len({served_by(proxy, "person-0") for _ in range(9)}) == 3


def test_affinity_keeps_each_session_on_one_replica_and_a_stopped_one_moves_only_its_own(
    replicas: list[Server],
) -> None:
    with Nginx([server.port for server in replicas], "affinity") as proxy:
        placed = {session: served_by(proxy, session) for session in SESSIONS}
        for _ in range(2):  # again and again: the same replica
            assert {session: served_by(proxy, session) for session in SESSIONS} == placed
        assert len(set(placed.values())) == 3  # 30 sessions reach all three
        assert len({served_by(proxy, None) for _ in range(12)}) >= 2  # no key: spread

        stopped = replicas[0]
        stopped.stop()  # SIGTERM: it finishes what it holds and exits, as Kubernetes stops a pod
        gone = f"127.0.0.1:{stopped.port}"
        moved = {session: served_by(proxy, session).split(", ")[-1] for session in SESSIONS}  # none fails
        for session, replica in placed.items():
            if replica == gone:
                assert moved[session] != gone  # its sessions went on to a survivor
            else:
                assert moved[session] == replica, session  # every other session stayed where it was
        assert gone not in {served_by(proxy, session) for session in SESSIONS}  # and it stays out
