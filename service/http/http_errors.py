"""Every error the service answers is JSON, in one shape.

The shape, published in the OpenAPI document (``service.http.openapi``)::

    {"error": "what went wrong", "detail": [{"loc": [...], "msg": "...", "type": "..."}]}

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

Scope = dict[str, Any]
JSON = "application/json"


def error_body(message: str, loc: list[str | int] | None = None, kind: str = "") -> bytes:
    detail = [{"loc": loc, "msg": message, "type": kind}] if loc is not None else []
    return json.dumps({"error": message, "detail": detail}).encode()


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
        if scope["path"] in self.api_routes and scope["method"] == "POST":
            content_type = dict(scope.get("headers") or []).get(b"content-type", JSON.encode())
            media_type = content_type.split(b";")[0].strip().lower().decode("latin-1")
            if media_type != JSON:
                message = f"the body must be {JSON}, got {media_type or 'no media type'}"
                await send_json(send, 415, error_body(message, ["header", "content-type"], "unsupported_media_type"))
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
                kept = [(k, v) for k, v in started.get("headers") or [] if k.lower() in (b"allow", b"retry-after")]
                body = in_error_shape(b"".join(held), headers.get(b"content-type", b""))
                await send_json(send, started["status"], body, kept)
                return
            await send(message)

        await self.app(scope, receive, send_json_errors)
