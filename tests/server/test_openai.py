"""The OpenAI-compatible routes, called by the ``openai`` package (a real client) against the real server.

Oracles are the service's own documented routes, which have their own tests:
/generate for sampling (the same engine, seeds and joints), /predict_next for
log-probabilities (the same distribution), /tokenize for the ids lm-evaluation-harness
sends. One float32 server, where two code paths give the same numbers to rounding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import httpx
import openai
import pytest
from openapi_spec_validator import validate as validate_spec

from bench.launcher import Server
from tests.http_calls import generate, predict

pytestmark = pytest.mark.slow

SENTENCE = "The game was released in the United States on the same day"


@pytest.fixture(scope="module")
def served(tiny_model_tag: str) -> Iterator[Server]:
    env = {"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_PRECISION": "float32"}
    with Server(env=env) as server:
        yield server


@pytest.fixture(scope="module")
def http(served: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(served: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key="no key is set", max_retries=0, timeout=60) as client:
        yield client


def test_models_lists_the_served_model_with_its_metadata(client: openai.OpenAI, tiny_model_tag: str) -> None:
    (model,) = client.models.list().data
    assert model.id == tiny_model_tag and model.object == "model" and model.owned_by == "nextword"
    assert model.created > 0 and model.model_extra["metadata"]["model_config"]["architecture"]
    assert client.models.retrieve(tiny_model_tag).id == tiny_model_tag
    assert client.models.retrieve(tiny_model_tag.split(":")[0]).id == tiny_model_tag  # its name serves too
    with pytest.raises(openai.NotFoundError) as refused:
        client.models.retrieve("gpt-4")
    assert refused.value.code == "model_not_found"


def test_greedy_completion_is_greedy_generate(client: openai.OpenAI, http: httpx.Client, tiny_model_tag: str) -> None:
    answer = client.completions.create(model=tiny_model_tag, prompt="The game was", max_tokens=8, temperature=0)
    (expected,) = generate(http, {"prompt": "The game was", "max_new_tokens": 8, "temperature": 0})
    (choice,) = answer.choices
    assert answer.object == "text_completion" and answer.model == tiny_model_tag and answer.id.startswith("cmpl-")
    assert choice.text == expected["text"] and choice.index == 0 and choice.logprobs is None
    assert choice.finish_reason == {"length": "length", "eos": "stop"}[expected["finish_reason"]]
    assert answer.usage.prompt_tokens == 3 and answer.usage.completion_tokens == len(expected["tokens"])
    assert answer.usage.total_tokens == 3 + len(expected["tokens"])


def test_choice_i_samples_as_generate_with_seed_plus_i(client: openai.OpenAI, http: httpx.Client) -> None:
    prompts = ["He was born in", "The film"]
    sampling = {"max_tokens": 10, "temperature": 1.1, "top_p": 0.9}
    answer = client.completions.create(model="nextword-test", prompt=prompts, n=3, seed=7, **sampling)
    assert [choice.index for choice in answer.choices] == list(range(6))
    for choice in answer.choices:
        prompt, i = prompts[choice.index // 3], choice.index % 3
        (expected,) = generate(
            http, {"prompt": prompt, "max_new_tokens": 10, "temperature": 1.1, "top_p": 0.9, "seed": 7 + i}
        )
        assert choice.text == expected["text"], choice.index
    assert len({choice.text for choice in answer.choices[:3]}) > 1  # three seeds, three samples


def test_a_stop_ends_the_choice_before_it(client: openai.OpenAI, http: httpx.Client) -> None:
    base = {"prompt": "He was born in", "max_new_tokens": 16, "temperature": 0.9, "seed": 3}
    (free,) = generate(http, base)
    stop = next(word for word in free["tokens"][1:] if word.isalpha())
    first = free["tokens"].index(stop)
    (choice,) = client.completions.create(
        model="nextword-test", prompt=base["prompt"], max_tokens=16, temperature=0.9, seed=3, stop=[stop, "@@@"]
    ).choices
    (stopped,) = generate(http, base | {"stop": [stop]})
    assert choice.finish_reason == "stop" and stopped["tokens"] == free["tokens"][: first + 1]
    # The text up to the stop, the stop left out.
    assert stopped["text"].startswith(choice.text) and stopped["text"][len(choice.text) :].strip() == stop


def stream_texts(client: openai.OpenAI, **request: object) -> tuple[dict[int, str], dict[int, str], object]:
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    usage = None
    for chunk in client.completions.create(stream=True, **request):
        assert chunk.object == "text_completion"
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason is not None:
                assert choice.index not in reasons  # one last chunk per choice
                reasons[choice.index] = choice.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    return texts, reasons, usage


def test_a_stream_carries_the_same_choices_and_usage(client: openai.OpenAI) -> None:
    request = {
        "model": "nextword-test",
        "prompt": ["He was born in", "The song"],
        "n": 2,
        "max_tokens": 12,
        "temperature": 1.0,
        "seed": 11,
        "stop": ["the"],
        "echo": True,
    }
    whole = client.completions.create(**request)
    texts, reasons, usage = stream_texts(client, stream_options={"include_usage": True}, **request)
    assert texts == {choice.index: choice.text for choice in whole.choices}
    assert reasons == {choice.index: choice.finish_reason for choice in whole.choices}
    assert usage == whole.usage


def test_a_raw_stream_ends_with_done(http: httpx.Client) -> None:
    body = {"model": "nextword-test", "prompt": "the", "max_tokens": 3, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(event.startswith("data: ") for event in events)
    assert all("choices" in json.loads(event[6:]) for event in events[:-1])


def test_echo_with_logprobs_scores_the_prompt_as_predict_next(client: openai.OpenAI, http: httpx.Client) -> None:
    (choice,) = client.completions.create(
        model="nextword-test", prompt=SENTENCE, max_tokens=0, echo=True, logprobs=5
    ).choices
    scores = choice.logprobs
    assert choice.text == SENTENCE and "".join(scores.tokens) == SENTENCE and choice.finish_reason == "length"
    assert scores.text_offset == [sum(map(len, scores.tokens[:i])) for i in range(len(scores.tokens))]
    matched = 0
    for token, logprob, top, offset in zip(
        scores.tokens, scores.token_logprobs, scores.top_logprobs, scores.text_offset, strict=True
    ):
        (expected,) = predict(http, {"text": SENTENCE[:offset], "top_k": 5})  # the words after the text so far
        probabilities = {p["word"]: p["probability"] for p in expected["predictions"]}
        alternatives = {key.strip(): value for key, value in top.items()}  # a line break's key strips to ""
        assert alternatives[token.strip()] == logprob  # the token itself is always among them
        best_word = max(value for key, value in alternatives.items() if key)
        assert best_word == pytest.approx(math.log(expected["predictions"][0]["probability"]), abs=1e-4)
        for word, probability in probabilities.items():
            if word in alternatives:
                assert alternatives[word] == pytest.approx(math.log(probability), abs=1e-4), (offset, word)
                matched += 1
        if token.strip() in probabilities:
            assert logprob == pytest.approx(math.log(probabilities[token.strip()]), abs=1e-4)
    assert matched >= 3 * len(scores.tokens)  # most alternatives are /predict_next's words


def test_ids_from_tokenize_score_as_the_text_does(client: openai.OpenAI, http: httpx.Client) -> None:
    """What lm-evaluation-harness sends: ids from /tokenize (a leading line break first), echo, max_tokens 1."""
    texts = [SENTENCE, "He was born in"]
    ids = [http.post("/tokenize", json={"prompt": text}).json()["tokens"] for text in texts]
    by_ids = client.completions.create(
        model="nextword-test", prompt=ids, max_tokens=1, echo=True, logprobs=1, temperature=0
    ).choices
    by_text = client.completions.create(model="nextword-test", prompt=texts, max_tokens=0, echo=True, logprobs=1)
    for tokens, scored, reference in zip(ids, by_ids, by_text.choices, strict=True):
        logprobs = scored.logprobs.token_logprobs
        assert logprobs[0] is None and len(logprobs) == len(tokens) + 1  # nothing precedes the first; one made
        assert logprobs[1 : len(tokens)] == pytest.approx(reference.logprobs.token_logprobs, abs=1e-5)
        assert scored.text.startswith("\n") and scored.finish_reason == "length"


def test_a_long_prompt_is_read_from_its_end_with_truncate_prompt_tokens(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    """vLLM's truncate_prompt_tokens: a prompt over the text limits is read from its last N tokens, as
    that end alone would be and as /generate's truncate reads it; the answer says it was cut."""
    long = " . ".join([SENTENCE] * 400)
    assert len(long) > 20_000
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="nextword-test", prompt=long, max_tokens=1)
    assert refused.value.body["param"] == "prompt"

    ask = {"model": "nextword-test", "max_tokens": 8, "temperature": 0, "echo": True, "logprobs": 1}
    answer = client.completions.create(prompt=long, extra_body={"truncate_prompt_tokens": 20}, **ask)
    (choice,) = answer.choices
    assert answer.usage.prompt_tokens == 20 and choice.model_extra["truncated"] is True
    kept = "".join(choice.logprobs.tokens[:20])
    assert long.endswith(kept) and len(kept) < 200
    (alone,) = client.completions.create(prompt=kept, **ask).choices
    assert choice.text == alone.text
    assert choice.logprobs.token_logprobs == pytest.approx(alone.logprobs.token_logprobs, abs=1e-5)
    (generated,) = generate(http, {"prompt": long, "max_new_tokens": 8, "temperature": 0, "truncate": 20})
    assert choice.text == kept + generated["text"]

    short = client.completions.create(prompt="the game", extra_body={"truncate_prompt_tokens": 20}, **ask)
    assert short.choices[0].model_extra["truncated"] is False and short.usage.prompt_tokens == 2
    body = {"model": "nextword-test", "prompt": long, "max_tokens": 2, "stream": True, "truncate_prompt_tokens": 5}
    with http.stream("POST", "/v1/completions", json=body) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line and line != "data: [DONE]"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["choices"][0]["truncated"] is True


def test_the_tokenizer_routes_round_trip(http: httpx.Client) -> None:
    info = http.get("/tokenizer_info").json()
    assert info["bos_token"] == "\n" and info["eos_token"] is None and info["vocab_size"] > 100
    (bos,) = http.post("/tokenize", json={"prompt": ""}).json()["tokens"]
    tokenized = http.post("/tokenize", json={"prompt": "The game was"}).json()
    assert tokenized["count"] == 4 and tokenized["tokens"][0] == bos and tokenized["max_model_len"] > 0
    bare = http.post("/tokenize", json={"prompt": "The game was", "add_special_tokens": False}).json()
    assert bare["tokens"] == tokenized["tokens"][1:]
    assert http.post("/detokenize", json={"tokens": bare["tokens"]}).json() == {"prompt": "The game was"}
    outside = http.post("/detokenize", json={"tokens": [info["vocab_size"]]})
    assert outside.status_code == 400 and outside.json()["detail"][0]["loc"] == ["tokens"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"best_of": 2}, "best_of"),
        ({"suffix": "and then"}, "suffix"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"max_tokens": 257}, "max_tokens"),
        ({"logprobs": 6}, "logprobs"),
        ({"temperature": 3}, "temperature"),
        ({"n": 65}, "n"),
        ({"extra_body": {"top_k": 5}}, "top_k"),  # not a field of OpenAI's: refused, not ignored
        ({"prompt": [[0, 10**9]]}, "prompt"),  # an id outside the vocabulary
        ({"extra_body": {"truncate_prompt_tokens": 0}}, "truncate_prompt_tokens"),
    ],
)
def test_what_cannot_be_honoured_raises_bad_request_naming_the_field(
    client: openai.OpenAI, fields: dict, param: str
) -> None:
    request = {"model": "nextword-test", "prompt": "the"} | fields
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(**request)
    error = refused.value.body
    assert refused.value.status_code == 400 and error["param"] == param, error
    assert error["type"] == "invalid_request_error" and error["message"] and "code" in error


def test_an_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="the")
    assert refused.value.body["param"] == "model" and "/v1/models" in refused.value.body["message"]


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b'{"model": "nextword-test", "prompt": "' + b"a" * 2_000_000 + b'"}', {}, 413),
        (b'{"model": "nextword-test", "prompt": "a"}', {"content-type": "text/plain"}, 415),
    ],
)
def test_errors_under_v1_are_in_openais_shape(http: httpx.Client, content: bytes, headers: dict, status: int) -> None:
    response = http.post("/v1/completions", content=content, headers={"content-type": "application/json", **headers})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    missing = http.get("/v1/nowhere")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}


def test_our_routes_keep_their_error_shape(http: httpx.Client) -> None:
    refused = http.post("/predict_next", json={"inputs": [{"text": "a", "top_k": 0}]})
    assert refused.status_code == 400 and isinstance(refused.json()["error"], str) and refused.json()["detail"]


def test_the_published_contract_holds_the_new_routes_and_the_vocabulary_bound(http: httpx.Client) -> None:
    spec = http.get("/docs.json").json()
    validate_spec(spec)
    for path, method in [
        ("/v1/completions", "post"),
        ("/v1/models", "get"),
        ("/v1/models/{model}", "get"),
        ("/tokenize", "post"),
        ("/detokenize", "post"),
        ("/tokenizer_info", "get"),
    ]:
        assert "401" in spec["paths"][path][method]["responses"], path
    vocabulary = http.get("/tokenizer_info").json()["vocab_size"]
    schemas = spec["components"]["schemas"]
    assert schemas["DetokenizeRequest"]["properties"]["tokens"]["items"]["maximum"] == vocabulary - 1
    ids = schemas["CompletionRequest"]["properties"]["prompt"]["anyOf"][2]["items"]
    assert ids["maximum"] == vocabulary - 1 and "x-token-id" not in json.dumps(spec)
    assert schemas["CompletionRequest"]["properties"]["best_of"]["maximum"] == 1  # what cannot be honoured, said
    assert "securitySchemes" not in spec["components"]  # no key set: no route asks for one


def test_an_empty_prompt_completes_from_the_start_of_a_text(
    client: openai.OpenAI, http: httpx.Client, tiny_model_tag: str
) -> None:
    """As /generate does with an empty prompt: found answering 500 by schemathesis's coverage phase."""
    for prompt in ("", [""], ["", "the"]):
        answer = client.completions.create(model=tiny_model_tag, prompt=prompt, max_tokens=3, temperature=0)
        assert len(answer.choices) == (2 if prompt == ["", "the"] else 1)
    echoed = client.completions.create(model=tiny_model_tag, prompt="", max_tokens=2, echo=True, logprobs=1)
    assert echoed.choices[0].logprobs is not None
    (greedy,) = generate(http, {"prompt": "", "max_new_tokens": 3, "temperature": 0})
    answer = client.completions.create(model=tiny_model_tag, prompt="", max_tokens=3, temperature=0)
    assert answer.choices[0].text == greedy["text"]
