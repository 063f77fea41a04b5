"""API keys on the real server: every API route wants the key, the open routes stay open, the key is never logged.

One server with a key from a file (as a mounted Kubernetes Secret gives it),
and a small admission bound (4,000 outstanding tokens) so that the ``openai``
client's ``RateLimitError`` can be met too. The server without a key is the
session's, which every other test uses unchanged.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import bentoml
import httpx
import openai
import pytest
from openapi_spec_validator import validate as validate_spec

from bench.launcher import Server
from tests.http_calls import metric, wait_for

pytestmark = pytest.mark.slow

KEY = "nw-test-4f1c9e0b7a2d4c6e8f10"
WRONG = "nw-wrong-0a1b2c3d4e5f6a7b8c9d"
API_CALLS = [
    ("POST", "/predict_next", {"inputs": [{"text": "the"}]}),
    ("POST", "/generate", {"inputs": [{"prompt": "the", "max_new_tokens": 2}]}),
    ("POST", "/generate_stream", {"inputs": [{"prompt": "the", "max_new_tokens": 2}]}),
    ("POST", "/v1/completions", {"model": "nextword-test", "prompt": "the", "max_tokens": 2}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/nextword-test", None),
    ("POST", "/tokenize", {"prompt": "the"}),
    ("POST", "/detokenize", {"tokens": [1]}),
    ("GET", "/tokenizer_info", None),
]
OPEN_ROUTES = ["/livez", "/readyz", "/metrics", "/docs.json", "/demo/", "/demo/demo.js"]


@pytest.fixture(scope="module")
def keyed(tiny_model_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    key_file = tmp_path_factory.mktemp("secret") / "key"
    key_file.write_text(KEY + "\n")  # a Secret's file may end in a line break
    env = {
        "NEXTWORD_MODEL": tiny_model_tag,
        "NEXTWORD_DEVICE": "cpu",
        "NEXTWORD_API_KEY_FILE": str(key_file),
        "NEXTWORD_MAX_QUEUED_TOKENS": "4000",
        "NEXTWORD_MAX_NEW_TOKENS": "100000",
    }
    with Server(env=env) as server:
        yield server


@pytest.fixture(scope="module")
def http(keyed: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed.url, timeout=60) as client:
        yield client


def call(http: httpx.Client, method: str, path: str, body: dict | None, key: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), API_CALLS)
def test_every_api_route_wants_the_key(http: httpx.Client, method: str, path: str, body: dict | None) -> None:
    for key, code in ((None, "missing_api_key"), (WRONG, "invalid_api_key"), (KEY[:-1], "invalid_api_key")):
        refused = call(http, method, path, body, key)
        assert refused.status_code == 401, (path, key, refused.text)
        assert refused.headers["www-authenticate"].startswith("Bearer")
        if path.startswith("/v1/"):  # OpenAI's shape
            assert refused.json()["error"]["code"] == code and refused.json()["error"]["param"] == "authorization"
        else:  # ours
            assert refused.json()["detail"][0] == {
                "loc": ["header", "authorization"],
                "msg": refused.json()["error"],
                "type": code,
            }
    answered = call(http, method, path, body, KEY)
    assert answered.status_code == 200, (path, answered.text)


def test_other_schemes_and_malformed_headers_are_refused(http: httpx.Client) -> None:
    body = {"inputs": [{"text": "the"}]}
    for header in (f"Basic {KEY}", KEY, "Bearer", f"bearer {KEY}x", f"Token {KEY}", f"Bearer{KEY}"):
        assert http.post("/predict_next", json=body, headers={"authorization": header}).status_code == 401, header
    assert http.post("/predict_next", json=body, headers={"authorization": f"bearer  {KEY}"}).status_code == 200


@pytest.mark.parametrize("path", OPEN_ROUTES)
def test_probes_metrics_and_the_page_stay_open(http: httpx.Client, path: str) -> None:
    assert http.get(path).status_code == 200


def test_the_key_is_never_logged(http: httpx.Client, keyed: Server) -> None:
    for key in (KEY, WRONG):
        call(http, "POST", "/predict_next", {"inputs": [{"text": "the", "top_k": 0}]}, key)  # a 400 is logged
        call(http, "POST", "/v1/completions", {"model": "nextword-test", "prompt": "the"}, key)
    log = keyed.output(limit=None)
    assert "/predict_next" in log  # the log does hold lines about these requests
    assert KEY not in log and WRONG not in log and KEY[:12] not in log


def test_the_openai_client_with_and_without_the_key(keyed: Server) -> None:
    with openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY, max_retries=0) as client:
        assert client.completions.create(model="nextword-test", prompt="the", max_tokens=2).choices[0].text
    wrong = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=WRONG, max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.code == "invalid_api_key"


def test_bentoml_client_sends_the_key_as_its_token(keyed: Server) -> None:
    with bentoml.SyncHTTPClient(keyed.url, token=KEY) as client:
        (answer,) = client.predict_next(inputs=[{"text": "the game", "top_k": 3}])
        assert len(answer["predictions"]) == 3
    with bentoml.SyncHTTPClient(keyed.url, token=WRONG) as client, pytest.raises(bentoml.exceptions.BentoMLException):
        client.predict_next(inputs=[{"text": "the game"}])


@contextlib.contextmanager
def endless_completion(http: httpx.Client) -> Iterator[None]:
    """A streamed choice of 100,000 tokens (past the 4,000-token bound), generating until the block ends."""
    body = {"model": "nextword-test", "prompt": "The game was", "max_tokens": 100_000, "temperature": 0, "stream": True}
    headers = {"authorization": f"Bearer {KEY}"}
    with http.stream("POST", "/v1/completions", json=body, headers=headers) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        yield
    wait_for(lambda: metric(http, "nextword_generate_outstanding_tokens") == 0, "the cancelled row left")


def test_over_the_admission_bound_the_openai_client_raises_rate_limit(http: httpx.Client, keyed: Server) -> None:
    with openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY, max_retries=0) as client, endless_completion(http):
        with pytest.raises(openai.RateLimitError) as refused:
            client.completions.create(model="nextword-test", prompt="the", n=16, max_tokens=256)
        assert refused.value.code == "rate_limit_exceeded"
        assert int(refused.value.response.headers["retry-after"]) >= 1
    with openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY, max_retries=0) as client:
        answer = client.completions.create(model="nextword-test", prompt="the", n=2, max_tokens=4)
        assert len(answer.choices) == 2


def test_the_contract_puts_the_bearer_scheme_on_every_api_route(http: httpx.Client) -> None:
    spec = http.get("/docs.json").json()
    validate_spec(spec)
    assert spec["components"]["securitySchemes"]["apiKey"] == spec["components"]["securitySchemes"]["apiKey"] | {
        "type": "http",
        "scheme": "bearer",
    }
    for method, path, _ in API_CALLS:
        template = "/v1/models/{model}" if path.startswith("/v1/models/") else path
        assert spec["paths"][template][method.lower()]["security"] == [{"apiKey": []}], path
    assert "security" not in json.dumps(spec["paths"].get("/livez", {}))
