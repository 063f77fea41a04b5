"""The real server over HTTP, with a tiny model from the test store."""

from __future__ import annotations

import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from bench.launcher import Server
from models.bundle import load_bundle
from models.device import pick_dtype, precision_name
from models.tokenizer import Tokenizer
from tests.bad_requests import BAD_REQUESTS
from tests.http_calls import generate, predict, scrape

pytestmark = pytest.mark.slow

PREFIXES = [
    "the sun rises in the",
    "",
    "In 1990 , the",
    "He was born in",
    "The album",
    "It is a",
    "of the",
    "zzzunknownword and the",
    "The river 's mouth is",
    "after the war",
    "she",
    "The game was released",
]


def test_ready_and_alive(client: httpx.Client) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_predict_next_fields(client: httpx.Client) -> None:
    first, empty, unknown = predict(
        client, {"text": "the sun rises in the", "top_k": 7}, {"text": ""}, {"text": "zzzqqq the"}
    )
    assert len(first["predictions"]) == 7 and len(empty["predictions"]) == 5
    probabilities = [p["probability"] for p in first["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 < p < 1 for p in probabilities) and sum(probabilities) <= 1
    assert first["tokens"] == 5 and empty["tokens"] == 0
    assert unknown["unknown"] == 1 and unknown["tokens"] == 2
    words = {p["word"] for item in (first, empty, unknown) for p in item["predictions"]}
    assert not words & {"<unk>", "<eos>"}


def test_top_k_100_never_offers_special_tokens(client: httpx.Client) -> None:
    (result,) = predict(client, {"text": "the", "top_k": 100})
    words = [p["word"] for p in result["predictions"]]
    assert len(words) == len(set(words)) == 100 and "<unk>" not in words and "<eos>" not in words


def test_answers_do_not_depend_on_batch(client: httpx.Client) -> None:
    alone = [predict(client, {"text": text, "top_k": 5})[0] for text in PREFIXES]
    together = predict(client, *({"text": text, "top_k": 5} for text in PREFIXES))
    for one, batched in zip(alone, together, strict=True):
        assert [p["word"] for p in one["predictions"]] == [p["word"] for p in batched["predictions"]]
        for a, b in zip(one["predictions"], batched["predictions"], strict=True):
            assert a["probability"] == pytest.approx(b["probability"], rel=1e-4, abs=1e-6)


def test_concurrent_requests_match_sequential_and_get_batched(client: httpx.Client, server) -> None:
    requests = [{"text": PREFIXES[i % len(PREFIXES)] + " the" * (i % 4), "top_k": 3} for i in range(32)]
    sequential = [predict(client, r)[0] for r in requests]
    before = batch_count_over_one(client)
    with httpx.Client(base_url=server.url, timeout=60) as other, ThreadPoolExecutor(32) as pool:
        concurrent = list(pool.map(lambda r: predict(other, r)[0], requests))
    for seq, conc in zip(sequential, concurrent, strict=True):
        assert [p["word"] for p in seq["predictions"]] == [p["word"] for p in conc["predictions"]]
    assert batch_count_over_one(client) > before, "no batch larger than 1 was recorded"


def validate_instance(instance: object, schema: dict) -> None:
    OAS30Validator(schema).validate(instance)


def batch_count_over_one(client: httpx.Client) -> float:
    """Batches of more than one input served for /predict_next, from /metrics."""
    text = scrape(client)
    count = float(re.search(r'nextword_batch_size_count\{endpoint="predict_next"\} (\S+)', text).group(1))
    ones = float(re.search(r'nextword_batch_size_bucket\{endpoint="predict_next",le="1.0"\} (\S+)', text).group(1))
    return count - ones


def test_greedy_generation_is_the_models_argmax_and_predict_next_adds_recency(
    client: httpx.Client, tiny_model_tag: str
) -> None:
    """Greedy /generate takes the model's own likeliest token at each step; /predict_next's
    top word for the same text is the likeliest with the recency cache mixed in."""
    cpu = torch.device("cpu")
    bundle = load_bundle(tiny_model_tag, cpu, pick_dtype("auto", cpu))
    words = [i for i, _ in enumerate(bundle.vocab.words) if i not in bundle.vocab.special_ids]
    prompt = "The game was"
    (result,) = generate(client, {"prompt": prompt, "max_new_tokens": 8, "temperature": 0})
    assert result["finish_reason"] in ("length", "eos")
    ids = [bundle.vocab.line_break_id, *bundle.vocab.encode(bundle.tokenizer.tokenize(prompt))]
    with torch.inference_mode():
        hidden, state = bundle.model.encode(torch.tensor([ids]), bundle.model.zero_state(1))
        alone = bundle.model.decode(hidden[:, -1], state, False)[0]
        mixed = bundle.model.decode(hidden[:, -1], state)[0]
        (nxt,) = predict(client, {"text": prompt, "top_k": 1})
        assert nxt["predictions"][0]["word"] == bundle.vocab.words[words[int(mixed[words].argmax())]]
        for token in result["tokens"]:
            alone[bundle.vocab.unk_id] = float("-inf")  # never generated
            assert bundle.vocab.words[int(alone.argmax())] == token
            hidden, state = bundle.model.encode(torch.tensor([[bundle.vocab.encode([token])[0]]]), state)
            alone = bundle.model.decode(hidden[:, -1], state, False)[0]


def test_generate_fields_and_finish_reasons(client: httpx.Client) -> None:
    base = {"prompt": "the sun", "max_new_tokens": 12, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "seed": 7}
    (free,) = generate(client, base)
    assert free["prompt_tokens"] == 2 and isinstance(free["text"], str) and "<unk>" not in free["tokens"]
    assert free["finish_reason"] in ("length", "eos")
    if free["finish_reason"] == "length":
        assert len(free["tokens"]) == 12
    assert len(free["tokens"]) >= 3, "the tiny model ended the text too soon for this test"

    # The same seed with the third token as a stop string stops at its first appearance, inclusive.
    stop_word = free["tokens"][2]
    (stopped,) = generate(client, base | {"stop": [stop_word]})
    first = free["tokens"].index(stop_word)
    assert stopped["finish_reason"] == "stop"
    assert stopped["tokens"] == free["tokens"][: first + 1]

    # A multi-word stop string matches as a token sequence.
    words = free["tokens"]
    (pair,) = generate(client, base | {"stop": [Tokenizer().detokenize(words[1:3])]})  # as the words are written
    end = next(i + 2 for i in range(len(words)) if words[i : i + 2] == words[1:3])
    assert pair["finish_reason"] == "stop" and pair["tokens"] == words[:end]


def test_seeded_sampling_is_reproducible_alone_or_batched(client: httpx.Client) -> None:
    request = {"prompt": "He was", "max_new_tokens": 15, "temperature": 1.2, "top_p": 0.9, "seed": 42}
    first = generate(client, request)[0]
    assert generate(client, request)[0] == first
    others = [{"prompt": f"the {w}", "max_new_tokens": 4 + i, "seed": i} for i, w in enumerate(["war", "a", "in"])]
    batched = generate(client, others[0], request, *others[1:])
    assert batched[1] == first
    unseeded = {k: v for k, v in request.items() if k != "seed"} | {"max_new_tokens": 30}
    assert len({generate(client, unseeded)[0]["text"] for _ in range(3)}) > 1


def test_metrics_exposes_nextword_metrics(client: httpx.Client) -> None:
    predict(client, {"text": "zzzunknown the"})
    generate(client, {"prompt": "the", "max_new_tokens": 3})
    text = scrape(client)
    for name in (
        "nextword_batch_size_bucket",
        "nextword_inference_seconds_bucket",
        "nextword_prefix_tokens_total",
        "nextword_tokens_processed_total",
        "nextword_tokens_generated_total",
        "nextword_unknown_tokens_total",
        "nextword_model_info",
        "bentoml_service_request_total",
    ):
        assert name in text, name
    precision = precision_name(pick_dtype("auto", torch.device("cpu")))  # the server's default
    labels = rf'architecture="lstm",device="cpu",precision="{precision}",tag="nextword-test:\w+"'
    assert re.search(rf"nextword_model_info\{{{labels}\}} 1\.0", text)
    generated = float(re.search(r"^nextword_tokens_generated_total (\S+)", text, re.M).group(1))
    assert generated >= 1


def test_openapi_documents_every_field(client: httpx.Client) -> None:
    schemas = client.get("/docs.json").json()["components"]["schemas"]
    for model, fields in {
        "NextWordInput": ("text", "top_k"),
        "GenerateInput": ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop"),
    }.items():
        for field in fields:
            prop = schemas[model]["properties"][field]
            assert prop.get("description") and "example" in prop, f"{model}.{field}"


def test_openapi_is_a_valid_document_of_its_version_with_every_bound(client: httpx.Client) -> None:
    spec = client.get("/docs.json").json()
    assert spec["openapi"] == "3.0.3"
    validate_spec(spec)  # raises on anything invalid for the declared version
    generate_input = spec["components"]["schemas"]["GenerateInput"]["properties"]
    assert generate_input["top_p"].items() >= {"minimum": 0.0, "exclusiveMinimum": True, "maximum": 1.0}.items()
    assert generate_input["temperature"].items() >= {"minimum": 0.0, "maximum": 5.0}.items()
    assert generate_input["seed"]["nullable"] is True and generate_input["seed"]["minimum"] == 0
    assert spec["components"]["schemas"]["NextWordInput"]["properties"]["top_k"]["maximum"] == 100
    for path in ("/predict_next", "/generate", "/generate_stream"):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["required"] is True
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["additionalProperties"] is False
        for status in ("400", "413", "415", "429", "500", "503", "504"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (path, status)
        assert "Retry-After" in operation["responses"]["429"]["headers"]


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/predict_next", b'{"inputs": [{"text": "a", "top_k": 0}]}', {}),
        ("/predict_next", b"{not json", {}),
        ("/generate", b"x" * 2_000_000, {}),
        ("/generate", b'{"inputs": [{"prompt": "a"}]}', {"content-type": "text/plain"}),
        ("/nowhere", b"", {}),
    ],
)
def test_error_bodies_match_the_published_error_schema(client: httpx.Client, path: str, body: bytes, headers) -> None:
    spec = client.get("/docs.json").json()
    response = client.post(path, content=body, headers={"content-type": "application/json", **headers})
    assert 400 <= response.status_code < 500, response.text
    validate_instance(response.json(), spec["components"]["schemas"]["Error"])


@pytest.mark.parametrize(("path", "body", "field"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_naming_the_field(client: httpx.Client, path: str, body, field: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert "error" in payload
    assert any(field in [str(part) for part in d["loc"]] for d in payload["detail"]) or field == ""


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["temperature", "top_p"])
def test_non_finite_numbers_are_refused_as_such(client: httpx.Client, field: str, value: str) -> None:
    body = f'{{"inputs": [{{"prompt": "a", "{field}": {value}}}]}}'
    response = client.post("/generate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"][-1] == field and "finite" in detail["msg"], detail


def test_floats_accept_integers(client: httpx.Client) -> None:
    (result,) = generate(client, {"prompt": "a", "temperature": 1, "top_p": 1, "max_new_tokens": 2})
    assert result["finish_reason"] in ("length", "eos") and len(result["tokens"]) <= 2


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"{not json", "application/json"), (b"\xff\xfe", "application/json"), (b"", "application/json")],
)
def test_malformed_bodies_get_400(client: httpx.Client, content: bytes, content_type: str) -> None:
    response = client.post("/predict_next", content=content, headers={"content-type": content_type})
    assert response.status_code == 400 and "error" in response.json()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/predict_next", 405), ("PUT", "/generate", 405), ("GET", "/no/such/path", 404)],
)
def test_routing_errors_are_json(client: httpx.Client, method: str, path: str, status: int) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] and response.json()["detail"] == []


METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS")
PAGES = {"/demo/": {"GET"}, "/demo/demo.js": {"GET"}, "/": {"GET"}}  # not API operations: not in /docs.json


def test_every_route_answers_an_undeclared_method_with_405_and_allow(client: httpx.Client) -> None:
    """Every route of the contract and every page, each method it does not declare: 405 with an
    ``Allow`` header naming what it takes, in our error shape (OpenAI's under /v1/), never a 5xx."""
    (model,) = client.get("/v1/models").json()["data"]
    declared = {
        path.replace("{model}", model["id"]): {method.upper() for method in methods}
        for path, methods in client.get("/docs.json").json()["paths"].items()
    }
    wrong = []
    for path, methods in {**declared, **PAGES}.items():
        for method in sorted(set(METHODS) - methods):
            response = client.request(method, path)
            allowed = {name.strip() for name in response.headers.get("allow", "").split(",")}
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            error = body.get("error")
            openai_shape = isinstance(error, dict) and isinstance(error.get("message"), str)
            shaped = openai_shape if path.startswith("/v1/") else isinstance(error, str)
            if response.status_code != 405 or not methods <= allowed or not shaped:
                wrong.append(f"{method} {path}: {response.status_code} allow={sorted(allowed)} {response.text[:80]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_json_gets_415(client: httpx.Client, content_type: str) -> None:
    response = client.post(
        "/predict_next", content=b'{"inputs": [{"text": "a"}]}', headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["detail"][0]["loc"] == ["header", "content-type"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /predict_next HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 12abc\r\n\r\n{}",
        b"POST /predict_next HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
)
def test_a_request_that_is_not_valid_http_gets_a_json_400(server, request_bytes: bytes) -> None:
    """Sent by hand, since an HTTP client would not send it; uvicorn's parser refuses it before the app."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request_bytes)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/json" in head.lower()
    payload = json.loads(body)
    assert payload["error"].startswith("the request is not valid HTTP") and payload["detail"][0]["loc"] == ["request"]


def test_oversized_body_gets_413(client: httpx.Client) -> None:
    response = client.post("/generate", content=b"x" * 2_000_000, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "NEXTWORD_MAX_BODY_BYTES" in response.json()["error"]
    assert response.json()["detail"][0]["loc"] == ["body"]

    def chunks():
        for _ in range(40):
            yield b"y" * 50_000

    response = client.post("/generate", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_server_still_answers_after_bad_input(client: httpx.Client) -> None:
    for path, body, _ in BAD_REQUESTS:
        client.post(path, json=body)
    assert client.get("/readyz").status_code == 200
    assert predict(client, {"text": "the"})[0]["predictions"]


def test_client_errors_log_one_line_and_no_traceback(client: httpx.Client, server) -> None:
    before = server.output(limit=None)
    for path, body, _ in BAD_REQUESTS:
        client.post(path, json=body)
    client.post("/predict_next", content=b"{not json", headers={"content-type": "application/json"})
    written = server.output(limit=None)[len(before) :]
    assert "Traceback" not in written and "ERROR" not in written, written[-3000:]
    lines = [line for line in written.splitlines() if "-> 400" in line]
    assert len(lines) == len(BAD_REQUESTS) + 1, written[-3000:]
    assert any("POST /predict_next -> 400 (inputs.0.top_k)" in line for line in lines)


@pytest.mark.parametrize("mode", ["adaptive", "off"])
def test_other_batching_modes_give_the_same_answers(mode: str, client: httpx.Client, tiny_model_tag: str) -> None:

    requests = [{"text": text, "top_k": 3} for text in PREFIXES[:8]]
    expected = [predict(client, r)[0] for r in requests]
    env = {"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_BATCHING": mode}
    with Server(env=env) as other, httpx.Client(base_url=other.url, timeout=60) as http, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: predict(http, r)[0], requests))
    for want, got in zip(expected, answers, strict=True):
        assert [p["word"] for p in want["predictions"]] == [p["word"] for p in got["predictions"]]
