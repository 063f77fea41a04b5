"""The HTTP layers our servers wear, in one place: the service and the benchmark's floor alike.

So that the floor (``bench/floor_service.py``) differs from the service only
by the model, and a layer added here is measured in both.

Usage::

    install_process_wide()           # once, at import
    wear(NextWord)  # after the @bentoml.service class
    answer_predict_next_directly(self.answer_predict_next)  # in the worker's __init__, once it can serve
    OPENAI.serve(Served(...))  # likewise: the /v1 and tokenizer routes' engine
    return next_word_response(outputs)  # from /predict_next
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from service.http.api_key import ApiKey
from service.http.body_limit import BodySizeLimit
from service.http.direct_route import DirectHandler, DirectRoute
from service.http.http_errors import JSONErrors
from service.http.logs import install as install_quiet_client_errors
from service.http.openai.contract import openai_contract
from service.http.openai.routes import OpenAIRoutes, ServedSlot
from service.http.openapi import ServeContract
from service.http.protocol_errors import install as install_json_protocol_errors
from service.http.schemas import NEXT_WORD_OUTPUTS, NextWordInput, NextWordOutput, PredictRequest
from service.http.traffic import install as install_traffic_limits
from service.settings import API_ROUTES, SETTINGS, TOKENIZER_ROUTES


def install_process_wide() -> None:
    """BentoML's request timeout fixed, client errors logged in one line, malformed HTTP answered in JSON."""
    install_traffic_limits()
    install_quiet_client_errors()
    install_json_protocol_errors()


# /predict_next's JSON requests, answered by service.http.direct_route once the worker registers its answer.
PREDICT_NEXT_DIRECT = DirectHandler(PredictRequest)
# The /v1 and tokenizer routes' engine, set by the worker once it can serve.
OPENAI = ServedSlot()


def wear(service: Any) -> None:
    """Outermost first: every error as JSON in its route's shape, the API key, the body size limit,
    the published contract on /docs.json, the OpenAI and tokenizer routes, and /predict_next's
    direct route (innermost: every layer above applies to it)."""
    posted = {*API_ROUTES, "/v1/completions", "/tokenize", "/detokenize"}  # JSON bodies, else 415
    service.add_asgi_middleware(JSONErrors, api_routes=posted)
    service.add_asgi_middleware(ApiKey, key=SETTINGS.api_key, guarded={*API_ROUTES, *TOKENIZER_ROUTES})
    service.add_asgi_middleware(BodySizeLimit, max_bytes=SETTINGS.max_body_bytes)
    service.add_asgi_middleware(
        ServeContract,
        bentoml_spec=lambda: service.openapi_spec.asdict(),
        api_routes=set(API_ROUTES),
        more=lambda: openai_contract(OPENAI.vocabulary()),
        final=lambda: OPENAI.vocabulary() is not None,  # the token ids' bound is known
        secured=SETTINGS.api_key is not None,
    )
    service.add_asgi_middleware(OpenAIRoutes, served=OPENAI)
    service.add_asgi_middleware(
        DirectRoute, path="/predict_next", handler=PREDICT_NEXT_DIRECT, server_name=service.name
    )


def answer_predict_next_directly(answer: Callable[[list[NextWordInput]], Awaitable[Response]]) -> None:
    """Send /predict_next's JSON requests to ``answer`` by the direct route, where the settings allow it."""
    if SETTINGS.direct_route:
        PREDICT_NEXT_DIRECT.serve(lambda request: answer(request.inputs))


def next_word_response(outputs: list[NextWordOutput]) -> Response:
    """/predict_next's body in one pydantic-core call.

    Given the list, BentoML dumps the models to dicts twice and encodes them
    with the json module, at a cost of the event loop's CPU per request, the
    bottleneck under many clients (docs/benchmarks.md).
    """
    return Response(NEXT_WORD_OUTPUTS.dump_json(outputs), media_type="application/json")
