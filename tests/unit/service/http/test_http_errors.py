"""Error shapes (service.http.http_errors) and API keys (service.http.api_key), as ASGI layers around small apps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from service.http.api_key import ApiKey, bearer_token
from service.http.http_errors import JSONErrors, in_openai_shape, openai_error_body, param_of


def answering(status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        await send({"type": "http.response.body", "body": body})

    return app


def call(app: Any, path: str, headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, dict, dict]:
    """One request through ``app``: its status, headers and JSON body."""
    sent: list[dict] = []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [
            (k.encode(), v.encode()) for k, v in {"content-type": "application/json", **(headers or {})}.items()
        ],
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), json.loads(body)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "invalid_request_error"),
        (413, "invalid_request_error"),
        (415, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "service_unavailable"),
        (504, "server_error"),
    ],
)
def test_openai_errors_carry_the_type_of_their_status(status: int, kind: str) -> None:
    error = json.loads(openai_error_body(status, "why", "n", "code"))["error"]
    assert error == {"message": "why", "type": kind, "param": "n", "code": "code"}


def test_our_shape_and_plain_text_become_openais() -> None:
    ours = json.dumps({"error": "too big", "detail": [{"loc": ["body", "prompt"], "msg": "x", "type": "too_long"}]})
    assert json.loads(in_openai_shape(413, ours.encode()))["error"] == {
        "message": "too big",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": "too_long",
    }
    assert json.loads(in_openai_shape(503, b"Service Unavailable"))["error"]["message"] == "Service Unavailable"
    kept = openai_error_body(400, "as it was", "model")
    assert in_openai_shape(400, kept) == kept
    assert param_of(["header", "authorization"]) == "authorization" and param_of(["stop", 1]) == "stop.1"
    assert param_of(None) is None


def test_under_v1_any_error_is_reshaped_and_keeps_retry_after() -> None:
    inner = answering(503, b"busy", [(b"content-type", b"text/plain"), (b"retry-after", b"2")])
    status, headers, body = call(JSONErrors(inner, api_routes={"/v1/completions"}), "/v1/completions")
    assert status == 503 and headers[b"retry-after"] == b"2"
    assert body["error"]["type"] == "service_unavailable" and body["error"]["message"] == "busy"
    status, _, body = call(JSONErrors(inner, api_routes={"/predict_next"}), "/predict_next")  # ours elsewhere
    assert status == 503 and body == {"error": "busy", "detail": []}


def test_a_body_that_is_not_json_gets_415_in_each_shape() -> None:
    app = JSONErrors(answering(200, b"{}"), api_routes={"/v1/completions", "/generate"})
    status, _, body = call(app, "/v1/completions", {"content-type": "text/plain"})
    assert status == 415 and body["error"]["param"] == "content-type"
    status, _, body = call(app, "/generate", {"content-type": "text/plain"})
    assert status == 415 and body["detail"][0]["loc"] == ["header", "content-type"]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        (b"Bearer abc", b"abc"),
        (b"bearer   abc  ", b"abc"),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer    ", None),
        (b"abc", None),
    ],
)
def test_bearer_token(header: bytes | None, token: bytes | None) -> None:
    assert bearer_token(header) == token


def test_the_key_guards_the_api_routes_and_every_v1_path_only() -> None:
    app = ApiKey(answering(200, b'{"ok": true}'), key="s3cret", guarded={"/predict_next"})
    for path in ("/predict_next", "/v1/completions", "/v1/anything"):
        assert call(app, path)[0] == 401, path
        assert call(app, path, {"authorization": "Bearer s3cret"})[0] == 200, path
        assert call(app, path, {"authorization": "Bearer s3cre"})[0] == 401, path
    for path in ("/livez", "/readyz", "/metrics", "/docs.json", "/demo/"):
        assert call(app, path, method="GET")[0] == 200, path
    status, headers, body = call(app, "/predict_next", {"authorization": "Bearer nope"})
    assert headers[b"www-authenticate"].startswith(b"Bearer") and body["detail"][0]["type"] == "invalid_api_key"
    open_app = ApiKey(answering(200, b"{}"), key=None, guarded={"/predict_next"})  # no key: nothing changes
    assert call(open_app, "/predict_next")[0] == 200
