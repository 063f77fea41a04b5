"""The API routes' JSON requests answered by our own ASGI layer instead of BentoML's generic route.

For one-input ``/predict_next`` requests, and for the many short ``/generate``
requests the engine answers between the steps of long ones, the event loop,
not the model, is the limit, and profiled at 64 clients BentoML's generic
per-request machinery (request context, router, endpoint wrapper, IO
descriptor and serde lookup, background tasks) took about a third of its
time. This layer does the same steps directly: read the body, validate it
with the route's own pydantic model, await the handler, send its response.
A validation error gets the 400 body and the one log line BentoML's route
gives.

Everything outside it still applies, since it is the innermost of our
middlewares and BentoML's own wrap ours: request metrics, the concurrency
limit and the request timeout (BentoML's), the body size limit, 415 for a
body that is not JSON and the one error shape (``service.http.http_stack``). The
``@bentoml.api`` methods stay the published contract, and serve whatever
this layer passes on: every request until the worker registers its handler
(``DirectHandler.serve``), and every request when the handler is never
registered (``NEXTWORD_DIRECT_ROUTE=off``, tracing on, BentoML's adaptive
batching: see ``Settings.direct_route``).

Usage::

    PREDICT = DirectHandler(PredictRequest)
    NextWord.add_asgi_middleware(DirectRoute, handlers={"/predict_next": PREDICT}, server_name="nextword")
    PREDICT.serve(lambda request: self.answer_predict_next(request.inputs))  # in the worker's __init__
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from service import metrics
from service.http.http_errors import send_json
from service.http.logs import log_client_error

logger = logging.getLogger("nextword")
Scope = dict[str, Any]
# BentoML's words for an error it did not expect, so a client sees the same 500 either way.
SERVER_ERROR = b'{"error": "An unexpected error has occurred, please check the server log.", "detail": []}'


class DirectHandler:
    """A direct route's request model and the worker's handler: None (pass every request on) until it is set."""

    def __init__(self, request_model: type[BaseModel]) -> None:
        self.request_model = request_model
        self.call: Callable[[Any], Awaitable[Response]] | None = None

    def serve(self, call: Callable[[Any], Awaitable[Response]]) -> None:
        self.call = call


class DirectRoute:
    """ASGI middleware: POSTs to a path in ``handlers`` answered by its handler once set; all else passed on."""

    def __init__(self, app: Any, handlers: dict[str, DirectHandler], server_name: str) -> None:
        self.app = app
        self.handlers = handlers
        self.server_header = (b"server", f"BentoML Service/{server_name}".encode())  # as BentoML's route says

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or handler.call is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        metrics.DIRECT_ROUTE_REQUESTS.inc()  # so an operator, and a test, can tell which route answered
        body = await read_body(receive)
        if body is None:  # the client left before its body was read
            return
        try:
            request = handler.request_model.model_validate_json(body or b"{}")  # BentoML reads no body as {}
        except ValidationError as error:
            log_client_error("POST", path, 400, error)
            await send_json(send, 400, validation_error_body(error), [self.server_header])
            return
        try:
            response = await handler.call(request)
        except Exception:
            logger.exception("POST %s failed", path)
            await send_json(send, 500, SERVER_ERROR, [self.server_header])
            return
        response.raw_headers.append(self.server_header)
        await response(scope, receive, send)


async def read_body(receive: Any) -> bytes | None:
    """The whole request body; None when the client disconnects first. Its size is bounded by ``BodySizeLimit``."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def validation_error_body(error: ValidationError) -> bytes:
    """BentoML's 400 body for a request that fails its model (``_bentoml_impl/server/app.py``)."""
    detail = error.errors(include_context=False, include_input=False)
    return json.dumps({"error": f"{error.error_count()} validation error for {error.title}", "detail": detail}).encode()
