"""BentoML's request timeout, without its timer outliving the request.

BentoML 1.4.39's ``TimeoutMiddleware`` arms a ``loop.call_later`` timer for
every request and never cancels it. The timer holds a copy of the request's
context (its OpenTelemetry span, BentoML's request state), so each request
stays in memory for the whole timeout (``NEXTWORD_TIMEOUT_S``, 60 s) after it
has been answered: under steady load the worker's memory grows and its
requests/s fall within a minute; with the timer cancelled both stay flat
(docs/benchmarks.md).

``install()`` swaps in the same middleware with the timer cancelled as soon as
the response starts; BentoML looks the class up when it builds the app, so it
must run at import of the service module. Its behaviour is otherwise BentoML's:
no response started within the timeout -> the request is cancelled and
answered 504. It runs the request in the caller's task under
``asyncio.timeout``, where BentoML's starts a second task per request and
waits for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse


class TimeoutMiddleware(traffic.TimeoutMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_disarm(message: dict[str, Any]) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # what BentoML's version lacks: its timer outlived the request
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, send_and_disarm)
        except TimeoutError:
            if not deadline.expired():  # the app's own TimeoutError, not ours
                raise
            body = {"error": f"Not able to process the request in {self.timeout} seconds", "detail": []}
            await JSONResponse(body, status_code=504)(scope, receive, send)


def install() -> None:
    """Make BentoML build its apps with this middleware instead of its own."""
    traffic.TimeoutMiddleware = TimeoutMiddleware
