"""The direct route: /predict_next's and /generate's JSON requests answered by our ASGI layer, as BentoML's would.

The layer alone, around a plain ASGI app standing for BentoML's route: which
requests it takes and which it passes on, and its answers to bad bodies and
a failing handler. The real server with the direct route on and off, over HTTP,
is in tests/server/test_direct_route.py.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.responses import Response

from service.http.direct_route import DirectHandler, DirectRoute
from service.http.schemas import GenerateRequest, NextWordInput, PredictRequest


async def bentoml_stand_in(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"passed on"})


def call(app, method: str, path: str, body: bytes = b"") -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, content=body, headers={"content-type": "application/json"})

    return asyncio.run(go())


def direct_app(answer=None) -> tuple[DirectRoute, DirectHandler, list[list[NextWordInput]]]:
    seen: list[list[NextWordInput]] = []

    async def echo(request: PredictRequest) -> Response:
        seen.append(request.inputs)
        return Response(json.dumps([i.text for i in request.inputs]), media_type="application/json")

    handler = DirectHandler(PredictRequest)
    if answer is not False:
        handler.serve(answer or echo)
    return DirectRoute(bentoml_stand_in, handlers={"/predict_next": handler}, server_name="nextword"), handler, seen


GOOD = b'{"inputs": [{"text": "the sun", "top_k": 3}]}'


def test_takes_json_posts_to_its_path_and_passes_the_rest_on() -> None:
    app, _, seen = direct_app()
    response = call(app, "POST", "/predict_next", GOOD)
    assert response.status_code == 200 and response.json() == ["the sun"]
    assert response.headers["server"] == "BentoML Service/nextword"
    assert seen[0][0].top_k == 3
    assert call(app, "GET", "/predict_next").text == "passed on"
    assert call(app, "POST", "/generate", GOOD).text == "passed on"


def test_passes_everything_on_until_the_worker_serves() -> None:
    app, handler, _ = direct_app(answer=False)
    assert call(app, "POST", "/predict_next", GOOD).text == "passed on"
    handler.serve(lambda request: asyncio.sleep(0, Response(b"[]", media_type="application/json")))
    assert call(app, "POST", "/predict_next", GOOD).text == "[]"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"inputs": [{"text": "a", "top_k": 0}]}', ["inputs", 0, "top_k"]),
        (b'{"inputs": [{"text": "a", "top_k": "5"}]}', ["inputs", 0, "top_k"]),
        (b'{"inputs": []}', ["inputs"]),
        (b"", ["inputs"]),  # no body reads as {}, as in BentoML
        (b"{not json", []),
    ],
)
def test_a_bad_body_gets_bentomls_400_naming_the_field(body: bytes, loc: list) -> None:
    app, _, seen = direct_app()
    response = call(app, "POST", "/predict_next", body)
    assert response.status_code == 400 and not seen
    payload = response.json()
    assert payload["error"].endswith("validation error for PredictRequest")
    assert payload["detail"][0]["loc"] == loc


def test_a_failing_handler_gets_a_500_without_its_details() -> None:
    async def broken(request: PredictRequest) -> Response:
        raise RuntimeError("secret internals")

    app, _, _ = direct_app(answer=broken)
    response = call(app, "POST", "/predict_next", GOOD)
    assert response.status_code == 500 and "secret" not in response.text
    assert response.json()["error"].startswith("An unexpected error")


def test_each_path_goes_to_its_own_handler_and_model() -> None:
    async def prompts(request: GenerateRequest) -> Response:
        return Response(json.dumps([i.prompt for i in request.inputs]), media_type="application/json")

    predict, generate = DirectHandler(PredictRequest), DirectHandler(GenerateRequest)
    predict.serve(lambda request: asyncio.sleep(0, Response(b'"predicted"', media_type="application/json")))
    generate.serve(prompts)
    app = DirectRoute(bentoml_stand_in, handlers={"/predict_next": predict, "/generate": generate}, server_name="x")
    assert call(app, "POST", "/predict_next", GOOD).json() == "predicted"
    assert call(app, "POST", "/generate", b'{"inputs": [{"prompt": "once"}]}').json() == ["once"]
    wrong = call(app, "POST", "/generate", GOOD)  # /predict_next's body is not /generate's
    assert wrong.status_code == 400 and wrong.json()["error"].endswith("validation error for GenerateRequest")
    assert call(app, "POST", "/generate_stream", b'{"inputs": [{"prompt": "once"}]}').text == "passed on"
