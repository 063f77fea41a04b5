"""BentoML's request timeout and concurrency limit, with the timeout's timer cancelled and each
refusal in its route's error shape.

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

from service.http.http_errors import error_body_for, send_json


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
            message = f"Not able to process the request in {self.timeout} seconds"
            await send_json(send, 504, error_body_for(scope["path"], 504, message))


class MaxConcurrencyMiddleware(traffic.MaxConcurrencyMiddleware):
    """BentoML's limit on requests in flight: over it, 429 at once, in the route's error shape
    (``/v1/*`` answers OpenAI's, whose clients then raise their rate-limit error)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in self.skip_paths and self._semaphore.locked():
            await send_json(send, 429, error_body_for(scope["path"], 429, "Too many requests"))
            return
        await super().__call__(scope, receive, send)


def install() -> None:
    """Make BentoML build its apps with these middlewares instead of its own."""
    traffic.TimeoutMiddleware = TimeoutMiddleware
    traffic.MaxConcurrencyMiddleware = MaxConcurrencyMiddleware
