"""Every error the service answers is JSON: our routes' shape, and OpenAI's on ``/v1/*``.

Our routes' shape, published in the OpenAPI document (``service.http.openapi``)::

    {"error": "what went wrong", "detail": [{"loc": [...], "msg": "...", "type": "..."}]}

On ``/v1/*`` (``service.http.openai``) every error is OpenAI's, so that its
clients raise their own typed exceptions::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": "..."}}

Everything inside the service writes our shape or OpenAI's; this
middleware is the one place that turns the first into the second on
``/v1/*``. The few errors answered outside it (BentoML's concurrency limit,
the request timeout) ask ``error_body_for`` for their path's shape.

BentoML answers validation errors in it, but the router's own errors (404
for an unknown path, 405 for GET on a POST route) are plain text, its
concurrency limit answers ``{"error": ...}`` without ``detail``, and its
other 4xx come as a one-element list (a 1.4.39 bug). This ASGI middleware
rewrites every error answer into the shape, and refuses a body that is not
JSON on the API routes with 415 before BentoML reads it.

Usage: ``NextWord.add_asgi_middleware(JSONErrors, api_routes={"/predict_next", ...})``.
"""

from __future__ import annotations

import json
from typing import Any

from service.engine.types import Overloaded, Shed

Scope = dict[str, Any]
JSON = "application/json"
OPENAI_PREFIX = "/v1/"  # errors under it are in OpenAI's shape
# OpenAI's error types by status; the client picks its exception by the status alone.
OPENAI_ERROR_TYPES = {401: "authentication_error", 429: "rate_limit_error", 503: "service_unavailable"}
KEPT_HEADERS = (b"allow", b"retry-after", b"www-authenticate")  # an error's headers that survive reshaping


def error_body(message: str, loc: list[str | int] | None = None, kind: str = "") -> bytes:
    detail = [{"loc": loc, "msg": message, "type": kind}] if loc is not None else []
    return json.dumps({"error": message, "detail": detail}).encode()


def openai_error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """OpenAI's error shape; ``param`` names the request field at fault."""
    kind = OPENAI_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}}).encode()


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def error_body_for(path: str, status: int, message: str, loc: list[str | int] | None = None, kind: str = "") -> bytes:
    """An error in the shape of the route at ``path``."""
    if is_openai_path(path):
        return openai_error_body(status, message, param_of(loc), kind or None)
    return error_body(message, loc, kind)


def overloaded(path: str, error: Overloaded) -> tuple[bytes, dict[str, str]]:
    """The 429 answer to a refused generation in the shape of the route at ``path``, and its
    ``Retry-After`` header: when the queued work should have drained enough to admit it."""
    headers = {"retry-after": str(error.retry_after_s)}
    if is_openai_path(path):
        return openai_error_body(429, str(error), None, "rate_limit_exceeded"), headers
    kind = "shed" if isinstance(error, Shed) else "overloaded"  # refused from the queue, or at once
    return error_body(str(error), ["inputs"], kind), headers


def param_of(loc: list[str | int] | None) -> str | None:
    """The request field a ``loc`` names, as OpenAI's ``param`` says it: ``prompt``, ``stop.1``, a header's name."""
    if not loc:
        return None
    parts = [str(part) for part in loc]
    if parts[0] in ("body", "header") and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def in_openai_shape(status: int, body: bytes) -> bytes:
    """An error body in our shape (or any other) as OpenAI's; one already in OpenAI's is kept."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return body
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        detail = payload.get("detail")
        first = detail[0] if isinstance(detail, list) and detail and isinstance(detail[0], dict) else {}
        return openai_error_body(status, payload["error"], param_of(first.get("loc")), first.get("type") or None)
    return openai_error_body(status, body.decode("utf-8", "replace").strip() or "error")


async def send_json(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def in_error_shape(body: bytes, content_type: bytes) -> bytes:
    """Any error body as ``{"error": ..., "detail": [...]}``."""
    if content_type.startswith(JSON.encode()):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, list) and len(payload) == 1:  # BentoML 1.4.39's 4xx as a one-element list
            payload = payload[0]
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            detail = payload.get("detail")
            return json.dumps({**payload, "detail": detail if isinstance(detail, list) else []}).encode()
    text = body.decode("utf-8", "replace").strip() or "error"
    return error_body(text)


class JSONErrors:
    def __init__(self, app: Any, api_routes: set[str]) -> None:
        self.app = app
        self.api_routes = api_routes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        openai = is_openai_path(path)
        if path in self.api_routes and scope["method"] == "POST":
            content_type = dict(scope.get("headers") or []).get(b"content-type", JSON.encode())
            media_type = content_type.split(b";")[0].strip().lower().decode("latin-1")
            if media_type != JSON:
                message = f"the body must be {JSON}, got {media_type or 'no media type'}"
                body = error_body_for(path, 415, message, ["header", "content-type"], "unsupported_media_type")
                await send_json(send, 415, body)
                return

        started: dict[str, Any] | None = None  # an error's start, held until its whole body is known
        held: list[bytes] = []

        async def send_json_errors(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and message["status"] >= 400:
                started = message
                return
            if started is not None and message["type"] == "http.response.body":
                held.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                headers = dict(started.get("headers") or [])
                kept = [(k, v) for k, v in started.get("headers") or [] if k.lower() in KEPT_HEADERS]
                if openai:
                    body = in_openai_shape(started["status"], b"".join(held))
                else:
                    body = in_error_shape(b"".join(held), headers.get(b"content-type", b""))
                await send_json(send, started["status"], body, kept)
                return
            await send(message)

        await self.app(scope, receive, send_json_errors)
