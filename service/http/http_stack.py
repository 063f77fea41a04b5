"""The HTTP layers our servers wear, in one place: the service and the benchmark's floor alike.

So that the floor (``bench/floor_service.py``) differs from the service only
by the model, and a layer added here is measured in both.

Usage::

    install_process_wide()           # once, at import
    wear(NextWord)  # after the @bentoml.service class
    answer_directly(self.answer_predict_next, self.answer_generate)  # in the worker's __init__, once it can serve
    OPENAI.serve(Served(...))  # likewise: the /v1 and tokenizer routes' engine
    return next_word_response(outputs)  # from /predict_next
    return generate_response(outputs)  # from /generate
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
from service.http.request_metrics import install as install_request_metrics
from service.http.schemas import (
    GENERATE_OUTPUTS,
    NEXT_WORD_OUTPUTS,
    GenerateInput,
    GenerateOutput,
    GenerateRequest,
    NextWordInput,
    NextWordOutput,
    PredictRequest,
)
from service.http.traffic import install as install_traffic_limits
from service.settings import API_ROUTES, SETTINGS, TOKENIZER_ROUTES


def install_process_wide() -> None:
    """BentoML's request timeout fixed and its request metrics bounded, client errors logged in one line,
    malformed HTTP answered in JSON."""
    install_traffic_limits()
    install_request_metrics()
    install_quiet_client_errors()
    install_json_protocol_errors()


# /predict_next's and /generate's JSON requests, answered by service.http.direct_route once the worker
# registers its answers.
PREDICT_NEXT_DIRECT = DirectHandler(PredictRequest)
GENERATE_DIRECT = DirectHandler(GenerateRequest)
# The /v1 and tokenizer routes' engine, set by the worker once it can serve.
OPENAI = ServedSlot()


def wear(service: Any) -> None:
    """Outermost first: every error as JSON in its route's shape, the API key, the body size limit,
    the published contract on /docs.json, the OpenAI and tokenizer routes, and /predict_next's
    and /generate's direct route (innermost: every layer above applies to it)."""
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
        DirectRoute,
        handlers={"/predict_next": PREDICT_NEXT_DIRECT, "/generate": GENERATE_DIRECT},
        server_name=service.name,
    )


def answer_directly(
    predict_next: Callable[[list[NextWordInput]], Awaitable[Response]],
    generate: Callable[[list[GenerateInput]], Awaitable[Response]] | None = None,
) -> None:
    """Send /predict_next's (and, given, /generate's) JSON requests by the direct route, where the settings allow."""
    if SETTINGS.direct_route:
        PREDICT_NEXT_DIRECT.serve(lambda request: predict_next(request.inputs))
        if generate is not None:
            GENERATE_DIRECT.serve(lambda request: generate(request.inputs))


def next_word_response(outputs: list[NextWordOutput]) -> Response:
    """/predict_next's body in one pydantic-core call.

    Given the list, BentoML dumps the models to dicts twice and encodes them
    with the json module, at a cost of the event loop's CPU per request, the
    bottleneck under many clients (docs/benchmarks.md).
    """
    return Response(NEXT_WORD_OUTPUTS.dump_json(outputs), media_type="application/json")


def generate_response(outputs: list[GenerateOutput]) -> Response:
    """/generate's body in one pydantic-core call, for the reason ``next_word_response`` gives."""
    return Response(GENERATE_OUTPUTS.dump_json(outputs), media_type="application/json")
