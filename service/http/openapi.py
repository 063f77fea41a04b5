"""The published contract: a valid OpenAPI 3.0.3 document on ``/docs.json``.

BentoML 1.4.39 declares ``openapi: 3.0.2`` but fills the document with
pydantic's JSON Schema 2020-12 (OpenAPI 3.1 forms: ``exclusiveMinimum: 0.0``,
``anyOf`` with ``null``, ``examples`` lists), which 3.0 tools refuse, marks
request bodies optional, and documents errors as a string ``detail`` the
server never sends. ``contract()`` turns BentoML's document into one that
keeps every bound and says what the server does:

- schemas in OpenAPI 3.0 form (``minimum`` + ``exclusiveMinimum: true``,
  ``nullable``, one ``example``);
- request bodies required;
- every error status an API route answers (400, 413, 415, 429, 500, 503,
  504) described with the one error shape of ``service.http.http_errors``, and
  ``Retry-After`` on 429;
- the stream's 200 described event by event (``data``, ``event``), as SSE
  clients and schemathesis read it.

``ServeContract`` is the ASGI middleware that answers ``GET /docs.json`` with
it (built once, at the first request), so the UI on ``/`` shows it too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from service.http.http_errors import send_json

OPENAPI_VERSION = "3.0.3"
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, in a sentence."},
        "detail": {
            "type": "array",
            "description": (
                "One entry per problem; empty when the error concerns no particular field. Present in every "
                "error but BentoML's own concurrency limit (429 'Too many requests'), which answers before the service."
            ),
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                        "description": 'Where: ["inputs", 0, "top_k"], ["body"], ["header", "content-type"].',
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string", "description": "A machine-readable kind, e.g. less_than_equal."},
                },
                "additionalProperties": True,
            },
        },
    },
    "example": {
        "error": "1 validation error for GenerateRequest",
        "detail": [{"loc": ["inputs", 0, "top_k"], "msg": "Input should be a valid integer", "type": "int_type"}],
    },
}
SSE_EVENT = {
    "type": "object",
    "description": "One Server-Sent Event.",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "description": "Always the default, message."},
        "data": {
            "type": "string",
            "description": (
                'JSON. One {"token": ..., "text": ...} per generated token (text: what the token adds to the '
                "output), then the final answer: a GenerateOutput with generated_tokens; "
                '{"error": ...} if generation failed after the stream began.'
            ),
        },
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
STREAMING_ROUTES = {"/generate_stream"}
BEARER = "apiKey"
BEARER_NOTE = "The key the server was started with (NEXTWORD_API_KEY or NEXTWORD_API_KEY_FILE)."
ERRORS = {
    "400": "Invalid input: detail[].loc names each field at fault.",
    "401": "An API key is set (NEXTWORD_API_KEY) and the request's is missing or wrong.",
    "413": "The body is larger than NEXTWORD_MAX_BODY_BYTES.",
    "415": "The body is not application/json.",
    "429": "Too many requests in flight, or (generation) more queued work than can finish in time; see Retry-After.",
    "500": "An error of the server's own.",
    "503": "Not ready yet (the model is loading), or adaptive batching would miss its deadline.",
    "504": "No answer started within NEXTWORD_TIMEOUT_S.",
}


def to_openapi_30(schema: Any) -> Any:
    """A JSON Schema 2020-12 fragment, as pydantic writes it, in OpenAPI 3.0's Schema Object form."""
    if isinstance(schema, list):
        return [to_openapi_30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: to_openapi_30(value) for key, value in schema.items()}
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[plain], out[bound] = out[bound], True
    variants = out.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants:
        rest = [v for v in variants if v != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1:
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if isinstance(out.get("examples"), list):
        examples = out.pop("examples")
        if examples:
            out.setdefault("example", examples[0])
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


def contract(
    bentoml_spec: dict,
    api_routes: set[str],
    more: Callable[[], tuple[dict, dict]] | None = None,
    secured: bool = False,
) -> dict:
    """BentoML's document, made valid OpenAPI 3.0.3 and true to what the server answers;
    ``more`` gives the paths and schemas of the routes BentoML does not know (``service.http.openai``);
    ``secured`` (an API key is set) puts the bearer scheme on every API route, so that the UI on / can send it."""
    spec = copy.deepcopy(bentoml_spec)
    spec["openapi"] = OPENAPI_VERSION
    components = spec.setdefault("components", {})
    components["schemas"] = {name: to_openapi_30(s) for name, s in components.get("schemas", {}).items()}
    components["schemas"]["Error"] = ERROR_SCHEMA
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if "requestBody" in operation:
                operation["requestBody"] = to_openapi_30(operation["requestBody"])
                operation["requestBody"]["required"] = True
            # BentoML keys statuses by int; OpenAPI's keys are strings.
            responses = {str(status): to_openapi_30(r) for status, r in operation.get("responses", {}).items()}
            operation["responses"] = responses
            for status in [s for s in responses if s.startswith(("4", "5"))]:
                responses[status] = error_response(status, responses[status].get("description", "Error"))
            if path in STREAMING_ROUTES and "200" in responses:
                responses["200"]["content"] = {"text/event-stream": {"schema": SSE_EVENT}}
            if path in api_routes:
                for status, description in ERRORS.items():
                    responses[status] = error_response(status, description)
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):  # BentoML's, replaced by Error
        components["schemas"].pop(name, None)
    guarded = set(api_routes)
    if more is not None:
        paths, schemas = more()
        spec.setdefault("paths", {}).update(paths)
        components["schemas"].update(schemas)
        guarded |= set(paths)
    if secured:
        components["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer", "description": BEARER_NOTE}}
        for path in guarded:
            for operation in spec["paths"].get(path, {}).values():
                operation["security"] = [{BEARER: []}]
    return spec


def error_response(status: str, description: str) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == "429":
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again (on refusals by the generation engine).",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


class ServeContract:
    """ASGI middleware: ``GET /docs.json`` answers ``contract()`` of the service's BentoML document."""

    def __init__(
        self,
        app: Any,
        bentoml_spec: Callable[[], dict],
        api_routes: set[str],
        more: Callable[[], tuple[dict, dict]] | None = None,
        final: Callable[[], bool] = lambda: True,
        secured: bool = False,
    ) -> None:
        self.app = app
        self.bentoml_spec = bentoml_spec
        self.api_routes = api_routes
        self.more = more
        self.final = final  # whether the document is complete and may be kept (the model is loaded)
        self.secured = secured
        self.body: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/docs.json" and scope["method"] in ("GET", "HEAD"):
            body = self.body
            if body is None:
                body = json.dumps(contract(self.bentoml_spec(), self.api_routes, self.more, self.secured)).encode()
                if self.final():
                    self.body = body
            await send_json(send, 200, body)
            return
        await self.app(scope, receive, send)
