"""ASGI middleware that refuses request bodies over a size limit with 413.

BentoML reads a whole body before validating it, so without this a client
could make a worker hold any amount of memory. A declared Content-Length over
the limit is refused before reading; a chunked body is read up to the limit.
"""

from __future__ import annotations

from typing import Any

from service.http.http_errors import error_body, send_json

Scope = dict[str, Any]


class BodySizeLimit:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                message = f"Content-Length must be a number of bytes, got {declared[:40].decode('latin-1')!r}"
                await send_json(send, 400, error_body(message, ["header", "content-length"], "invalid_header"))
                return
            if int(declared) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        message = f"request body is larger than the limit of {self.max_bytes} bytes (NEXTWORD_MAX_BODY_BYTES)"
        await send_json(send, 413, error_body(message, ["body"], "too_large"))
