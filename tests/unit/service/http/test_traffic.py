"""The request timeout middleware that replaces BentoML's (service.http.traffic)."""

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from bench.launcher import REPO
from service.http.traffic import TimeoutMiddleware


async def _fast_app(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _slow_app(scope: dict, receive: Any, send: Any) -> None:
    await asyncio.sleep(10)
    await _fast_app(scope, receive, send)


async def _call(middleware: TimeoutMiddleware) -> tuple[list[dict], list[asyncio.TimerHandle]]:
    """Run one HTTP request through ``middleware``; returns the messages sent and the timers armed."""
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    call_at = loop.call_at  # call_later and asyncio.timeout both arm their timers through it

    def recording_call_at(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        timers.append(call_at(*args, **kwargs))
        return timers[-1]

    loop.call_at = recording_call_at  # type: ignore[method-assign]
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    try:
        await middleware({"type": "http", "path": "/predict_next"}, receive, send)
    finally:
        loop.call_at = call_at  # type: ignore[method-assign]
    return sent, timers


def test_answered_request_leaves_no_timer_behind() -> None:
    sent, timers = asyncio.run(_call(TimeoutMiddleware(_fast_app, timeout=60)))
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert timers and all(timer.cancelled() for timer in timers)


def test_slow_request_still_times_out_with_504() -> None:
    sent, _ = asyncio.run(_call(TimeoutMiddleware(_slow_app, timeout=0.05)))
    assert sent[0]["status"] == 504
    assert b"Not able to process the request in 0.05 seconds" in sent[1]["body"]


async def _slow_stream(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(0.2)  # past the timeout, once the response has started
    await send({"type": "http.response.body", "body": b"late but whole"})


def test_a_started_response_runs_past_the_timeout() -> None:
    sent, _ = asyncio.run(_call(TimeoutMiddleware(_slow_stream, timeout=0.05)))
    assert [m.get("status") for m in sent] == [200, None] and sent[1]["body"] == b"late but whole"


async def _raises_its_own_timeout(scope: dict, receive: Any, send: Any) -> None:
    raise TimeoutError("an upstream call of the app's own")


def test_the_apps_own_timeout_error_is_not_a_504() -> None:
    with pytest.raises(TimeoutError, match="of the app's own"):
        asyncio.run(_call(TimeoutMiddleware(_raises_its_own_timeout, timeout=60)))


def test_the_service_installs_it_in_place_of_bentomls(tiny_model_tag: str) -> None:
    """In a fresh interpreter, so that no other test's import of the service decides the outcome."""
    check = (
        "from bentoml._internal.server.http import traffic\n"
        "from service.http.traffic import TimeoutMiddleware\n"
        "assert traffic.TimeoutMiddleware is not TimeoutMiddleware, 'installed before the service'\n"
        "import service.service\n"
        "assert traffic.TimeoutMiddleware is TimeoutMiddleware, 'not installed by the service'\n"
    )
    env = os.environ | {"NEXTWORD_MODEL": tiny_model_tag}  # the service checks its model at import
    run = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
