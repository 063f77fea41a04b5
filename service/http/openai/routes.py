"""The OpenAI-compatible routes, and the tokenizer routes that lm-evaluation-harness's remote tokenizer calls.

- ``POST /v1/completions`` (``service.http.openai.completions``);
- ``GET /v1/models``, ``GET /v1/models/{model}``: the served model, with its metadata;
- ``POST /tokenize``, ``POST /detokenize``, ``GET /tokenizer_info``: vLLM's
  tokenizer routes, which ``lm_eval``'s ``RemoteTokenizer`` reads, so that a
  client tokenizes exactly as the model does.

They are an ASGI middleware with a Starlette router inside, the innermost
of the service's: every layer outside (the API key, the body limit, the
error shapes, BentoML's metrics, concurrency limit and timeout) applies to
them. Paths it does not route go on to BentoML's app.

Usage::

    OPENAI = ServedSlot()
    NextWord.add_asgi_middleware(OpenAIRoutes, served=OPENAI)
    OPENAI.serve(Served(engine, ...))  # in the worker's __init__, once it can serve
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from service.engine.types import Overloaded
from service.http.http_errors import (
    OPENAI_PREFIX,
    error_body,
    error_body_for,
    openai_error_body,
    overloaded,
    send_json,
)
from service.http.logs import log_client_error
from service.http.openai.completions import CompletionError, CompletionPlan, Served
from service.http.openai.schemas import CompletionRequest, DetokenizeRequest, TokenizeRequest
from service.settings import SETTINGS, TOKENIZER_ROUTES

logger = logging.getLogger("nextword")
Scope = dict[str, Any]
LINE_BREAK_TEXT = "\n"  # the text of the token every text starts with
M = TypeVar("M", bound=BaseModel)


class ServedSlot:
    """The worker's ``Served``: None until the worker can serve."""

    def __init__(self) -> None:
        self.served: Served | None = None

    def serve(self, served: Served) -> None:
        self.served = served

    def vocabulary(self) -> int | None:
        """The served model's vocabulary size; None until it is served."""
        return None if self.served is None else len(self.served.engine.vocab)


class OpenAIRoutes:
    """ASGI middleware: the /v1 and tokenizer routes answered here; every other request passed on."""

    def __init__(self, app: Any, served: ServedSlot) -> None:
        self.app = app
        self.slot = served
        self.router = Router(
            routes=[
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model:path}", self.model, methods=["GET"]),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/detokenize", self.detokenize, methods=["POST"]),
                Route("/tokenizer_info", self.tokenizer_info, methods=["GET"]),
            ],
            default=app,
            redirect_slashes=False,
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        # The lifespan is BentoML's, and so is every other path: /predict_next's hot path skips the router.
        if scope["type"] != "http" or not is_routed_here(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            await self.router(scope, receive, send)
        except HTTPException as error:
            # A method the route does not take: Starlette's router raises its 405 when an app is in
            # the scope (BentoML's is), for that app's exception handler, which sits inside this layer.
            message = f"{scope['method']} is not allowed on {scope['path']}"
            if error.headers and "Allow" in error.headers:
                message += f"; use {error.headers['Allow']}"
            body = error_body_for(scope["path"], error.status_code, message, ["method"], "method_not_allowed")
            headers = [(name.lower().encode(), value.encode()) for name, value in (error.headers or {}).items()]
            await send_json(send, error.status_code, body, headers)

    def served(self) -> Served:
        if self.slot.served is None:
            raise CompletionError(503, "the model is still loading; retry shortly", None, "not_ready")
        return self.slot.served

    # -- /v1 --------------------------------------------------------------------------------------

    async def completions(self, request: Request) -> Response:
        try:
            body = await read_model(request, CompletionRequest)
            plan = CompletionPlan.of(body, self.served())
            return await plan.answer()
        except CompletionError as error:
            return openai_error(error)
        except Overloaded as error:
            body, headers = overloaded(request.url.path, error)
            return Response(body, status_code=429, media_type="application/json", headers=headers)
        except Exception:  # the engine failed: one logged traceback, and OpenAI's 500
            logger.exception("POST /v1/completions failed")
            return openai_error(CompletionError(500, "the server failed to answer; see its log"))

    async def models(self, request: Request) -> Response:
        try:
            card = model_card(self.served())
        except CompletionError as error:
            return openai_error(error)
        return json_response({"object": "list", "data": [card]})

    async def model(self, request: Request) -> Response:
        try:
            served = self.served()
            if request.path_params["model"] not in served.names:
                message = f"model {request.path_params['model']!r} is not served here"
                raise CompletionError(404, message, "model", "model_not_found")
        except CompletionError as error:
            return openai_error(error)
        return json_response(model_card(served))

    # -- the tokenizer, as vLLM serves it ------------------------------------------------------------

    async def tokenize(self, request: Request) -> Response:
        try:
            body = await read_model(request, TokenizeRequest)
            engine = self.served().engine
        except CompletionError as error:
            return our_error(error)
        ids = engine.tokenize(body.prompt).ids
        tokens = ids if body.add_special_tokens else ids[1:]
        return json_response(
            {"count": len(tokens), "max_model_len": SETTINGS.max_text_tokens, "tokens": tokens, "token_strs": None}
        )

    async def detokenize(self, request: Request) -> Response:
        try:
            body = await read_model(request, DetokenizeRequest)
            engine = self.served().engine
            outside = [i for i in body.tokens if i >= len(engine.vocab)]
            if outside:
                message = f"token id {outside[0]} is outside the vocabulary of {len(engine.vocab)} tokens"
                raise CompletionError(400, message, "tokens", "invalid_token_id")
        except CompletionError as error:
            return our_error(error)
        return json_response({"prompt": engine.tokenizer.detokenize(engine.vocab.decode(body.tokens))})

    async def tokenizer_info(self, request: Request) -> Response:
        try:
            engine = self.served().engine
        except CompletionError as error:
            return our_error(error)
        settings = engine.tokenizer.settings
        return json_response(
            {
                "tokenizer_class": "nextword",
                # Every text starts after a line break: the token to put first, as lm_eval puts a BOS.
                "bos_token": LINE_BREAK_TEXT,
                "eos_token": None,  # the end of a text (<eot>) is no text a client could send
                "pad_token": None,
                "model_max_length": SETTINGS.max_text_tokens,
                "vocab_size": len(engine.vocab),
                "lowercase": settings.lowercase,
                "level": settings.level,
            }
        )


def is_routed_here(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX) or path in TOKENIZER_ROUTES


async def read_model(request: Request, model: type[M]) -> M:
    """The body as ``model``, or a ``CompletionError`` naming the fields at fault."""
    body = await request.body()
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as error:
        log_client_error(request.method, request.url.path, 400, error)
        problems = error.errors(include_context=False, include_input=False)
        first = problems[0]
        param = str(first["loc"][0]) if first["loc"] else None
        message = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems[:3])
        raise CompletionError(400, message, param, first["type"]) from None


def model_card(served: Served) -> dict[str, Any]:
    return {
        "id": served.model_id,
        "object": "model",
        "created": served.created,
        "owned_by": "nextword",
        "metadata": served.metadata,
    }


def json_response(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), media_type="application/json")


def openai_error(error: CompletionError, headers: dict[str, str] | None = None) -> Response:
    body = openai_error_body(error.status, str(error), error.param, error.code)
    return Response(body, status_code=error.status, media_type="application/json", headers=headers)


def our_error(error: CompletionError) -> Response:
    """The tokenizer routes are ours: our error shape."""
    loc: list[str | int] = [error.param] if error.param else ["body"]
    body = error_body(str(error), loc, error.code or "")
    return Response(body, status_code=error.status, media_type="application/json")
