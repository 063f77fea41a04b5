"""API keys: with ``NEXTWORD_API_KEY`` (or ``NEXTWORD_API_KEY_FILE``) set, the API routes want
``Authorization: Bearer <key>``.

Guarded: our routes, every path under ``/v1/`` and the tokenizer routes.
Open: ``/livez``, ``/readyz`` and ``/metrics`` (probes and Prometheus carry
no key), the OpenAPI document and the typing page, which are static and
ask for the key themselves when a route answers 401.

A missing or wrong key gets 401 with ``WWW-Authenticate: Bearer``, in the
route's error shape (``service.http.http_errors`` makes it OpenAI's on
``/v1/*``). The key is compared in constant time, and neither it nor what a
client sent is ever logged.

Usage: ``NextWord.add_asgi_middleware(ApiKey, key=SETTINGS.api_key, guarded={"/predict_next", ...})``.
"""

from __future__ import annotations

import hmac
from typing import Any

from service.http.http_errors import OPENAI_PREFIX, error_body, send_json

Scope = dict[str, Any]
CHALLENGE = (b"www-authenticate", b'Bearer realm="nextword"')


class ApiKey:
    def __init__(self, app: Any, key: str | None, guarded: set[str]) -> None:
        self.app = app
        self.key = key.encode() if key else None
        self.guarded = guarded

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if self.key is None or scope["type"] != "http" or not self.guards(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = bearer_token(dict(scope.get("headers") or []).get(b"authorization"))
        if given is None:
            message = "this route wants an API key: send the header Authorization: Bearer <key>"
            await self.refuse(send, message, "missing_api_key")
            return
        if not hmac.compare_digest(given, self.key):
            await self.refuse(send, "the API key is not valid", "invalid_api_key")
            return
        await self.app(scope, receive, send)

    def guards(self, path: str) -> bool:
        return path in self.guarded or path.startswith(OPENAI_PREFIX)

    async def refuse(self, send: Any, message: str, kind: str) -> None:
        await send_json(send, 401, error_body(message, ["header", "authorization"], kind), [CHALLENGE])


def bearer_token(header: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is none."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()
