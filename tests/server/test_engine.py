"""The generation engine over HTTP: continuous batching, streaming, the state cache, admission.

Three servers of the tiny test model, in float32 (where the cache's answers
can be compared bit for bit): ``engine`` (cache on, 1 MiB), ``cold`` (cache
off), ``tight`` (2 rows at a time, a 1 s timeout, a 40,000-token bound) and
``bounded`` (2 rows at a time, a 4,000-token bound).
Greedy decoding of the tiny model never ends its text, which gives rows that
run as long as a test needs. Tests decide by the server's own counts
(tokens generated, rows running) and by rows too long to end during the
test (``endless``), never by how fast this machine decodes; ``wait_for``'s
limit only keeps a broken server from hanging the suite.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from bench.launcher import Server
from models.tokenizer import Tokenizer
from tests.http_calls import generate, metric, predict, wait_for

pytestmark = pytest.mark.slow

FLOAT32 = {"NEXTWORD_PRECISION": "float32", "NEXTWORD_DEVICE": "cpu", "NEXTWORD_MAX_NEW_TOKENS": "100000"}
LONG = {"prompt": "The game was", "max_new_tokens": 4000, "temperature": 0}
ENDLESS = LONG | {"max_new_tokens": 100_000}  # runs until its client leaves, as far as any test goes
PREFIX_COUNTS = ("nextword_prefix_tokens_total", "nextword_tokens_processed_total")  # read, and run
SEEDED = {"prompt": "He was born in", "max_new_tokens": 30, "temperature": 1.1, "top_p": 0.95, "seed": 42}


@contextmanager
def serve(tag: str, **env: str) -> Iterator[httpx.Client]:
    with Server(env={"NEXTWORD_MODEL": tag, **FLOAT32, **env}) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def engine(tiny_model_tag: str) -> Iterator[httpx.Client]:
    with serve(tiny_model_tag, NEXTWORD_STATE_CACHE_MB="1", NEXTWORD_MAX_BATCH_SIZE="64") as client:
        yield client


@pytest.fixture(scope="module")
def cold(tiny_model_tag: str) -> Iterator[httpx.Client]:
    with serve(tiny_model_tag, NEXTWORD_STATE_CACHE_MB="0", NEXTWORD_MAX_BATCH_SIZE="64") as client:
        yield client


@pytest.fixture(scope="module")
def tight(tiny_model_tag: str) -> Iterator[httpx.Client]:
    limits = {"NEXTWORD_MAX_BATCH_SIZE": "2", "NEXTWORD_TIMEOUT_S": "1", "NEXTWORD_MAX_QUEUED_TOKENS": "40000"}
    with serve(tiny_model_tag, **limits) as client:
        yield client


@pytest.fixture(scope="module")
def bounded(tiny_model_tag: str) -> Iterator[httpx.Client]:
    with serve(tiny_model_tag, NEXTWORD_MAX_BATCH_SIZE="2", NEXTWORD_MAX_QUEUED_TOKENS="4000") as client:
        yield client


def in_background(client: httpx.Client, *inputs: dict) -> Future[httpx.Response]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(client.post, "/generate", json={"inputs": list(inputs)})
    pool.shutdown(wait=False)
    return future


def tokens_generated(client: httpx.Client) -> float:
    return metric(client, "nextword_tokens_generated_total")


@contextmanager
def endless(client: httpx.Client, prompt: str = "The game was") -> Iterator[Iterator[str]]:
    """A streamed row of 100,000 tokens, decoding once its first token has come; it leaves when the block ends."""
    with client.stream("POST", "/generate_stream", json={"inputs": [ENDLESS | {"prompt": prompt}]}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith('data: {"token"')
        yield lines
        cancelled = metric(client, "nextword_generate_cancelled_rows_total")
    wait_for(lambda: metric(client, "nextword_generate_cancelled_rows_total") > cancelled)  # its row has left


def running_rows(client: httpx.Client) -> float:
    return metric(client, "nextword_generate_rows", '{state="running"}')


def engine_is_empty(client: httpx.Client) -> bool:
    return (
        running_rows(client) == 0
        and metric(client, "nextword_generate_rows", '{state="queued"}') == 0
        and metric(client, "nextword_generate_outstanding_tokens") == 0
    )


# -- continuous batching ------------------------------------------------------------------------


def test_a_short_request_finishes_before_a_long_one_started_earlier(engine: httpx.Client) -> None:
    with endless(engine) as long:
        before = tokens_generated(engine)
        (short,) = generate(engine, {"prompt": "the", "max_new_tokens": 5, "temperature": 0})
        assert len(short["tokens"]) == 5
        # Answered while the long row still runs: far fewer tokens than its 100,000 were generated.
        assert tokens_generated(engine) - before < ENDLESS["max_new_tokens"] and running_rows(engine) == 1
        assert next(line for line in long if line).startswith('data: {"token"')  # and it goes on


def test_joining_mid_flight_changes_no_seeded_output(engine: httpx.Client) -> None:
    (alone,) = generate(engine, SEEDED)
    others = [{"prompt": f"the {w}", "max_new_tokens": 3 + 7 * i, "seed": i} for i, w in enumerate(["war", "a"])]
    results = []
    with endless(engine), endless(engine, "In 1990 , the"):
        for steps in (0, 7, 31):  # joins the two running rows at a different step each time
            start = tokens_generated(engine)
            wait_for(lambda s=start, n=steps: tokens_generated(engine) >= s + 2 * n)
            results.append(generate(engine, SEEDED)[0])
            results.append(generate(engine, others[0], SEEDED, others[1])[1])
        assert running_rows(engine) == 2  # the long rows ran all along
    assert all(result == alone for result in results)


def test_request_level_batching_makes_the_short_request_wait(tiny_model_tag: str) -> None:
    """NEXTWORD_GENERATE_BATCHING=request: kept for the benchmark's comparison, and it really differs."""
    with serve(tiny_model_tag, NEXTWORD_GENERATE_BATCHING="request") as client:
        before = tokens_generated(client)
        long = in_background(client, LONG | {"max_new_tokens": 1500})
        wait_for(lambda: running_rows(client) >= 1)
        generate(client, {"prompt": "the", "max_new_tokens": 5})
        # Its answer came after the whole batch before it: every one of the long row's tokens.
        assert tokens_generated(client) - before >= 1500 + 5, "the short request did not wait for the running batch"
        assert long.result().status_code == 200


# -- streaming ----------------------------------------------------------------------------------


def stream_events(client: httpx.Client, item: dict) -> list[dict]:
    with client.stream("POST", "/generate_stream", json={"inputs": [item]}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line]


def test_streamed_tokens_equal_the_generated_text(engine: httpx.Client) -> None:
    (whole,) = generate(engine, SEEDED)
    events = stream_events(engine, SEEDED)
    *tokens, final = events
    assert [e["token"] for e in tokens] == whole["tokens"]
    assert "".join(e["text"] for e in tokens) == whole["text"] == final["text"]
    assert final["finish_reason"] == whole["finish_reason"]
    assert final["generated_tokens"] == len(whole["tokens"])
    assert final["prompt_tokens"] == whole["prompt_tokens"] == 4


@pytest.mark.parametrize(
    "prompt", ["The game was", "The game was ", "The game was\n", "The game was,", "He said (", ""]
)
def test_a_continuation_joins_its_prompt_as_a_person_reads_it(engine: httpx.Client, prompt: str) -> None:
    """prompt + text is the whole text: the one detokenize makes of the prompt's tokens and the new ones."""
    tokenizer = Tokenizer()
    for seed in range(4):
        item = {"prompt": prompt, "max_new_tokens": 6, "temperature": 1.0, "seed": seed}
        (answer,) = generate(engine, item)
        whole = tokenizer.detokenize(tokenizer.tokenize(prompt) + answer["tokens"])
        # The prompt's own trailing space stays the client's, also before a generated line break.
        assert re.sub(" +\n", "\n", prompt + answer["text"]) == whole, (prompt, answer)
        if answer["tokens"][0][0].isalnum():  # a word: spaced from a prompt that ends in a word or a comma
            assert answer["text"].startswith(" ") == (prompt[-1:] not in ("", " ", "\n", "(")), (prompt, answer)
        *pieces, _final = stream_events(engine, item)
        assert "".join(piece["text"] for piece in pieces) == answer["text"]


def test_a_stream_while_others_decode_is_the_same(engine: httpx.Client) -> None:
    with endless(engine):
        events = stream_events(engine, SEEDED)
        assert running_rows(engine) == 1  # streamed beside the long row
    assert [e["token"] for e in events[:-1]] == generate(engine, SEEDED)[0]["tokens"]


def test_a_disconnecting_stream_frees_its_row(engine: httpx.Client) -> None:
    wait_for(lambda: engine_is_empty(engine))
    cancelled = metric(engine, "nextword_generate_cancelled_rows_total")
    with engine.stream("POST", "/generate_stream", json={"inputs": [ENDLESS]}) as response:
        lines = response.iter_lines()
        first = [next(lines) for _ in range(6)]  # three token events and their blank lines
        assert running_rows(engine) == 1
    assert all(line.startswith('data: {"token"') for line in first[::2])
    wait_for(lambda: engine_is_empty(engine))
    assert metric(engine, "nextword_generate_cancelled_rows_total") == cancelled + 1
    assert engine.get("/readyz").status_code == 200
    assert len(generate(engine, LONG | {"max_new_tokens": 2})[0]["tokens"]) == 2  # greedy: never ends early


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": [{"prompt": "a"}, {"prompt": "b"}]}, "inputs"),
        ({"inputs": [{"prompt": "a", "top_p": 0}]}, "top_p"),
    ],
)
def test_stream_bad_input_is_a_400_naming_the_field(engine: httpx.Client, body: dict, field: str) -> None:
    response = engine.post("/generate_stream", json=body)
    assert response.status_code == 400
    assert any(field in map(str, d["loc"]) for d in response.json()["detail"])


# -- the state cache ----------------------------------------------------------------------------

TYPED = "The game was released in North America on the same day as the"


def test_cache_on_and_off_give_identical_answers_alone(engine: httpx.Client, cold: httpx.Client) -> None:
    """One input per request (the typing case): float32 answers are equal bit for bit."""
    words = TYPED.split()
    counts = ("hits_total", "tokens_saved_total")
    hits, saved = (metric(engine, f"nextword_state_cache_{name}") for name in counts)
    read, run = (metric(engine, name, '{endpoint="predict_next"}') for name in PREFIX_COUNTS)
    cold_read, cold_run = (metric(cold, name, '{endpoint="predict_next"}') for name in PREFIX_COUNTS)
    for n in range(1, len(words) + 1):
        item = {"text": " ".join(words[:n]), "top_k": 10}
        assert predict(engine, item) == predict(cold, item), item["text"]
    assert metric(engine, "nextword_state_cache_hits_total") >= hits + len(words) - 1
    # Each prefix resumed from the one before it: all but its last word were saved.
    newly_saved = metric(engine, "nextword_state_cache_tokens_saved_total") - saved
    assert newly_saved >= sum(range(1, len(words)))
    assert metric(cold, "nextword_state_cache_hits_total") == 0
    # The token counts tell the two apart: both read every prefix; the cold one ran all it read.
    typed = sum(n + 1 for n in range(1, len(words) + 1))  # each prefix's words and its leading line break
    engine_read, engine_run = (metric(engine, name, '{endpoint="predict_next"}') for name in PREFIX_COUNTS)
    assert engine_read - read == typed and engine_run - run == typed - newly_saved
    cold_counts = [metric(cold, name, '{endpoint="predict_next"}') for name in PREFIX_COUNTS]
    assert cold_counts == [cold_read + typed, cold_run + typed]


def test_cache_hits_misses_and_partial_hits_batched_together(engine: httpx.Client, cold: httpx.Client) -> None:
    predict(engine, {"text": "In 1990 , the"}, {"text": "She was"})
    batch = [
        {"text": "In 1990 , the", "top_k": 8},  # whole prefix cached
        {"text": "In 1990 , the album was", "top_k": 8},  # partly cached
        {"text": "zzz never seen before", "top_k": 8},  # not cached
        {"text": "She was born in", "top_k": 8},  # partly cached
        {"text": "", "top_k": 8},
    ]
    assert predict(engine, *batch) == predict(cold, *batch)


def test_cached_prompts_generate_the_same_text(engine: httpx.Client, cold: httpx.Client) -> None:
    predict(engine, {"text": SEEDED["prompt"]})  # the prompt's state is now cached
    assert generate(engine, SEEDED) == generate(cold, SEEDED)


COMMON = "the of and in a to was is for on as with by he it at from his an were".split()


def test_cache_memory_stays_bounded_under_many_distinct_prefixes(engine: httpx.Client, cold: httpx.Client) -> None:
    texts = [" ".join(words) for words in itertools.product(COMMON[:8], COMMON, COMMON)][:4096]  # 4,096 distinct
    for start in range(0, len(texts), 64):
        predict(engine, *({"text": text, "top_k": 1} for text in texts[start : start + 64]))
    held = metric(engine, "nextword_state_cache_bytes")
    assert 0.8 * 2**20 < held <= 2**20, held  # filled its 1 MiB, evicting the oldest
    assert predict(engine, {"text": texts[-1]}) == predict(cold, {"text": texts[-1]})


# -- admission and timeouts ---------------------------------------------------------------------

FULL = [{"prompt": "the", "max_new_tokens": 256, "temperature": 0}] * 64  # 16,384 tokens, 2 rows at a time


def test_over_the_token_bound_gets_429_with_retry_after(bounded: httpx.Client) -> None:
    rejected = metric(bounded, "nextword_generate_rejected_total")
    with endless(bounded):  # 100,000 tokens outstanding, admitted by an idle engine: past the 4,000 bound
        refused = bounded.post("/generate", json={"inputs": FULL})
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["detail"][0]["loc"] == ["inputs"] and "capacity" in refused.json()["error"]
        assert refused.json()["detail"][0]["type"] == "overloaded"  # at once, not from the queue
        streamed = bounded.post("/generate_stream", json={"inputs": [FULL[0] | {"max_new_tokens": 10_000}]})
        assert streamed.status_code == 429 and int(streamed.headers["retry-after"]) >= 1
        assert streamed.headers["content-type"].startswith("application/json")
        assert metric(bounded, "nextword_generate_rejected_total") == rejected + 2
    wait_for(lambda: engine_is_empty(bounded))
    assert generate(bounded, *FULL[:2])[1]["finish_reason"] == "length"  # within the bound again: admitted


def test_queued_work_that_cannot_finish_in_time_is_refused_from_the_queue(tight: httpx.Client) -> None:
    wait_for(lambda: engine_is_empty(tight))
    shed = metric(tight, "nextword_generate_shed_total")
    # Admitted (the engine is idle), but 1,280,000 tokens 2 rows at a time cannot finish within the
    # 1 s timeout on any machine: its queued rows are shed with a 429 before the timeout's 504.
    huge = [{"prompt": "the", "max_new_tokens": 20_000, "temperature": 0}] * 64
    answer = tight.post("/generate", json={"inputs": huge})
    assert answer.status_code == 429, answer.text
    assert answer.json()["detail"][0]["type"] == "shed" and "queue" in answer.json()["error"]
    assert int(answer.headers["retry-after"]) >= 1
    assert metric(tight, "nextword_generate_shed_total") == shed + 1
    wait_for(lambda: engine_is_empty(tight))  # the shed rows, queued or running, are gone
    assert len(generate(tight, LONG | {"max_new_tokens": 3})[0]["tokens"]) == 3


def test_a_request_that_times_out_frees_its_rows(tight: httpx.Client) -> None:
    wait_for(lambda: engine_is_empty(tight))
    cancelled = metric(tight, "nextword_generate_cancelled_rows_total")
    # Two rows fit the batch at once, so nothing queues to be shed; 100,000 steps cannot end within 1 s.
    timed_out = tight.post("/generate", json={"inputs": [ENDLESS, ENDLESS]})
    assert timed_out.status_code == 504, timed_out.text
    wait_for(lambda: engine_is_empty(tight))
    assert metric(tight, "nextword_generate_cancelled_rows_total") == cancelled + 2
    assert len(generate(tight, LONG | {"max_new_tokens": 3})[0]["tokens"]) == 3  # greedy: never ends early


def test_the_server_stays_healthy(engine: httpx.Client, tight: httpx.Client, bounded: httpx.Client) -> None:
    for client in (engine, tight, bounded):
        assert client.get("/readyz").status_code == 200
        assert predict(client, {"text": "the"})[0]["predictions"]
        wait_for(lambda c=client: engine_is_empty(c))
