"""The direct route: /predict_next's JSON requests answered by our ASGI layer, as BentoML's route answers them.

The layer alone, around a plain ASGI app standing for BentoML's route: which
requests it takes and which it passes on, and its answers to bad bodies and
a failing handler. Then the real server with the direct route on (the session's)
and off, over HTTP: the same statuses, bodies and headers for good and bad
requests, and BentoML's request metrics still count what the direct route answered.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response

from bench.launcher import Server
from service.http.direct_route import DirectHandler, DirectRoute
from service.http.schemas import NextWordInput, PredictRequest
from tests.test_service import BAD_REQUESTS


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
    return DirectRoute(bentoml_stand_in, path="/predict_next", handler=handler, server_name="nextword"), handler, seen


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


REQUESTS = [
    b'{"inputs": [{"text": "the sun rises in the", "top_k": 3}]}',
    b'{"inputs": [{"text": "the game was rel", "top_k": 2, "complete": true}, {"text": ""}]}',
    b"{not json",
    b"\xff\xfe",
    b"",
    *(json.dumps(body).encode() for path, body, _ in BAD_REQUESTS if path == "/predict_next"),
]
SAME_HEADERS = ("content-type", "content-length", "server")


def test_the_direct_route_answers_as_bentomls_route(client: httpx.Client, tiny_model_tag: str) -> None:
    env = {"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_DIRECT_ROUTE": "off"}
    with Server(env=env) as other, httpx.Client(base_url=other.url, timeout=60) as bentoml_route:
        for body in REQUESTS:
            direct = client.post("/predict_next", content=body, headers={"content-type": "application/json"})
            routed = bentoml_route.post("/predict_next", content=body, headers={"content-type": "application/json"})
            assert direct.status_code == routed.status_code, body
            assert direct.json() == routed.json(), body
            for name in SAME_HEADERS:
                assert direct.headers.get(name) == routed.headers.get(name), (body, name)


def request_count(client: httpx.Client, status: str) -> float:
    families = text_string_to_metric_families(client.get("/metrics").text)
    return sum(
        sample.value
        for family in families
        if family.name == "bentoml_service_request"
        for sample in family.samples
        if sample.name.endswith("_total")
        and sample.labels.get("endpoint") == "/predict_next"
        and sample.labels.get("http_response_code") == status
    )


def test_bentomls_request_metrics_count_the_direct_routes_answers(client: httpx.Client) -> None:
    ok, bad = request_count(client, "200"), request_count(client, "400")
    for _ in range(3):
        client.post("/predict_next", json={"inputs": [{"text": "the"}]})
    client.post("/predict_next", json={"inputs": []})
    assert request_count(client, "200") == ok + 3
    assert request_count(client, "400") == bad + 1
