"""/v1/completions' own logic against hand-written expectations, on an inline engine of the tiny
model: how a request maps to the engine's requests, how a prompt is shown, how a stream holds back
what may begin a stop sequence, and how a token's logprobs are laid out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import torch

from models.tokenizer import Tokenizer
from service.engine.engine import Engine, EngineConfig, Row
from service.engine.request import Encoded
from service.engine.types import FinishReason, TokenLogprob
from service.http.openai.completions import CompletionError, CompletionPlan, LogprobLists, Served, StreamedChoice
from service.http.openai.schemas import CompletionRequest


@pytest.fixture(scope="module")
def served(tiny_model_tag: str) -> Served:
    engine = Engine.inline(tiny_model_tag, EngineConfig())
    return Served.of(engine, datetime(2026, 12, 7, tzinfo=UTC), asked_as="nextword")


def plan_of(served: Served, **fields: object) -> CompletionPlan:
    return CompletionPlan.of(CompletionRequest.model_validate({"model": "nextword", **fields}), served)


def common_words(served: Served, count: int) -> list[str]:
    """The model's most frequent plain words (the vocabulary is ordered by frequency)."""
    vocab = served.engine.vocab
    return [w for w in vocab.words[len(vocab.special_ids) :] if w.isalpha()][:count]


def test_each_choice_is_a_request_seeded_one_apart_and_top_p_zero_is_greedy(served: Served) -> None:
    plan = plan_of(served, prompt=["one", "two"], n=2, seed=5, top_p=0.0, max_tokens=4, stop=["x y"])
    requests = plan.generation_requests()
    assert [(r.prompt, r.seed) for r in requests] == [("one", 5), ("one", 6), ("two", 5), ("two", 6)]
    assert {(r.temperature, r.top_p, r.max_new_tokens, r.stop, r.prompt_ids) for r in requests} == {
        (0.0, 1.0, 4, ("x y",), None)
    }


def test_a_prompt_of_ids_runs_as_given_and_a_text_after_its_line_break(served: Served) -> None:
    ids = served.engine.tokenize("the city").ids
    by_ids, by_text = plan_of(served, prompt=ids[1:]).prompts[0], plan_of(served, prompt="the  city").prompts[0]
    assert by_ids.ids == ids[1:] and by_ids.shown == 0 and by_ids.from_ids
    assert by_text.ids == ids and by_text.shown == 1 and not by_text.from_ids
    # Each piece carries the white space before it, so the pieces join into the prompt as written.
    assert by_text.pieces == ["the", "  city"] and by_text.offsets == [0, 3] and "".join(by_text.pieces) == "the  city"
    request = plan_of(served, prompt=ids[1:], truncate_prompt_tokens=1).generation_requests()[0]
    assert request.prompt_ids == (ids[-1],) and request.truncate is None


def test_a_model_not_served_and_an_id_outside_the_vocabulary_are_refused(served: Served) -> None:
    with pytest.raises(CompletionError) as unknown_model:
        CompletionPlan.of(CompletionRequest.model_validate({"model": "gpt-4", "prompt": "a"}), served)
    assert (unknown_model.value.status, unknown_model.value.param) == (404, "model")
    with pytest.raises(CompletionError) as outside:
        plan_of(served, prompt=[len(served.engine.vocab)])
    assert (outside.value.status, outside.value.param, outside.value.code) == (400, "prompt", "invalid_token_id")


def row_for(plan: CompletionPlan, stops: list[list[int]]) -> Row:
    request = plan.generation_requests()[0]
    return Row(request, Encoded([1], 0, 0), stops, torch.Generator())


def test_a_stream_holds_back_what_may_begin_a_stop_and_never_sends_the_stop(served: Served) -> None:
    first, second, third = common_words(served, 3)
    index = served.engine.vocab.index
    plan = plan_of(served, prompt="so", max_tokens=8, stop=[f"{first} {second}"], stream=True)
    choice = StreamedChoice(0, plan, None)
    row = row_for(plan, [[index[first], index[second]]])
    row.ids.append(index[first])
    assert choice.take(row, index[first]) == []  # it may begin the stop: held
    row.ids.append(index[third])
    released = choice.take(row, index[third])  # it did not: both go out, in order
    assert [part["text"] for part in released] == [f" {first}", f" {third}"]

    stopping = StreamedChoice(0, plan, None)
    row = row_for(plan, [[index[first], index[second]]])
    row.ids.append(index[first])
    assert stopping.take(row, index[first]) == []
    row.ids.append(index[second])
    row.finish_reason, row.stop_tokens = FinishReason.STOP, 2
    (last,) = stopping.take(row, index[second])  # the stop itself is never sent
    assert (last["text"], last["finish_reason"]) == ("", "stop")


def test_a_tokens_logprobs_spell_its_alternatives_as_they_would_join_the_text(served: Served) -> None:
    first, second = common_words(served, 2)
    index = served.engine.vocab.index
    lists = LogprobLists()
    joiner = Tokenizer().detokenizer(after="so")
    piece = joiner.piece(first)
    scored = TokenLogprob(index[first], -0.5, ((index[second], -0.25), (index["."], -1.0)))
    lists.add(piece, 2, scored, Tokenizer().detokenizer(after="so"), served.engine.vocab.words)
    assert lists.as_dict() == {
        "tokens": [f" {first}"],
        "token_logprobs": [-0.5],
        # The alternatives as they would have joined the text, the chosen one always among them.
        "top_logprobs": [{f" {second}": -0.25, ".": -1.0, f" {first}": -0.5}],
        "text_offset": [2],
    }
    lists.add("", 7, None, joiner, served.engine.vocab.words)  # a position nothing precedes: nulls
    assert lists.token_logprobs[-1] is None and lists.top_logprobs[-1] is None


def test_served_names_the_model_by_tag_name_and_the_tag_asked(served: Served) -> None:
    tag = served.engine.bundle.tag
    assert served.names == {str(tag), tag.name, "nextword"} and served.model_id == str(tag)
    assert served.created == int(datetime(2026, 12, 7, tzinfo=UTC).timestamp())
