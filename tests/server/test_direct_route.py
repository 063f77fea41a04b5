"""The direct route on the real server: it answers as BentoML's route, and BentoML's request metrics count it."""

from __future__ import annotations

import json

import httpx

from bench.launcher import Server
from tests.bad_requests import BAD_REQUESTS
from tests.http_calls import metric_samples

REQUESTS = [
    ("/predict_next", b'{"inputs": [{"text": "the sun rises in the", "top_k": 3}]}'),
    ("/predict_next", b'{"inputs": [{"text": "the game was rel", "top_k": 2, "complete": true}, {"text": ""}]}'),
    ("/generate", b'{"inputs": [{"prompt": "The game was", "max_new_tokens": 6, "seed": 7}]}'),
    ("/generate", b'{"inputs": [{"prompt": "It", "max_new_tokens": 3, "temperature": 0}, {"prompt": "", "seed": 2}]}'),
    *((path, body) for path in ("/predict_next", "/generate") for body in (b"{not json", b"\xff\xfe", b"")),
    *((path, json.dumps(body).encode()) for path, body, _ in BAD_REQUESTS if path in ("/predict_next", "/generate")),
]
SAME_HEADERS = ("content-type", "content-length", "server")


def counted(client: httpx.Client, family: str, **labels: str) -> float:
    """A counter's total on /metrics over the samples with these labels (the family must be there)."""
    return sum(
        sample.value
        for sample in metric_samples(client, family)
        if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def direct_answers(client: httpx.Client) -> float:
    return counted(client, "nextword_direct_route_requests")


def test_the_direct_route_answers_as_bentomls_route(client: httpx.Client, tiny_model_tag: str) -> None:
    env = {"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_DIRECT_ROUTE": "off"}
    with Server(env=env) as other, httpx.Client(base_url=other.url, timeout=60) as bentoml_route:
        answered = direct_answers(client)
        for path, body in REQUESTS:
            direct = client.post(path, content=body, headers={"content-type": "application/json"})
            routed = bentoml_route.post(path, content=body, headers={"content-type": "application/json"})
            assert direct.status_code == routed.status_code, (path, body)
            assert direct.json() == routed.json(), (path, body)
            for name in SAME_HEADERS:
                assert direct.headers.get(name) == routed.headers.get(name), (path, body, name)
        # The comparison is between the two routes: each request took the one its server was set to.
        assert direct_answers(client) == answered + len(REQUESTS)
        assert direct_answers(bentoml_route) == 0


def request_count(client: httpx.Client, status: str) -> float:
    return counted(client, "bentoml_service_request", endpoint="/predict_next", http_response_code=status)


def test_bentomls_request_metrics_count_the_direct_routes_answers(client: httpx.Client) -> None:
    ok, bad = request_count(client, "200"), request_count(client, "400")
    for _ in range(3):
        client.post("/predict_next", json={"inputs": [{"text": "the"}]})
    client.post("/predict_next", json={"inputs": []})
    assert request_count(client, "200") == ok + 3
    assert request_count(client, "400") == bad + 1


def series(client: httpx.Client, family: str) -> list[dict[str, str]]:
    """The label sets of a metric family's samples on /metrics (the family must be there)."""
    return [sample.labels for sample in metric_samples(client, family)]


def test_paths_a_client_makes_up_add_no_series_to_the_request_metrics(client: httpx.Client) -> None:
    """Each new label value is a new series kept for the server's life: made-up paths share one."""
    for n in range(40):
        client.get(f"/no-such-route-{n}")
        client.post(f"/predict_next/{n}", json={"inputs": [{"text": "the"}]})
        client.get(f"/v1/models/made-up-{n}")
    before = {
        family: len(series(client, family))
        for family in ("bentoml_service_request", "bentoml_service_request_duration_seconds")
    }
    for n in range(40, 80):
        client.get(f"/no-such-route-{n}")
        client.get(f"/v1/models/made-up-{n}")
    for family, count in before.items():
        assert len(series(client, family)) == count, family
    endpoints = {labels["endpoint"] for labels in series(client, "bentoml_service_request")}
    assert {"other", "/v1/models/{model}"} <= endpoints
    assert not any("no-such-route" in endpoint or "made-up" in endpoint for endpoint in endpoints)
