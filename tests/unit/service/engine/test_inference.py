"""The Predictor in process, on the tiny test model."""

from __future__ import annotations

import math
from dataclasses import astuple

import pytest
import torch

from models.bundle import load_bundle
from models.tokenizer import Tokenizer, TokenizerSettings, shown
from service.engine.inference import Predictor
from service.engine.state_cache import StateCache
from service.engine.types import FinishReason, GenerationRequest, NextWordQuery
from training.fresh_texts import evaluate_fresh_texts


def test_a_lower_casing_model_completes_case_insensitively(tiny_model_tag: str) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    bundle.tokenizer = Tokenizer(TokenizerSettings(lowercase=True))
    (answer,) = Predictor(bundle, torch.device("cpu")).predict_next([NextWordQuery("In The Fi", 5, complete=True)])
    assert answer["fragment"] == "Fi" and answer["predictions"]  # as typed: the characters a word replaces
    exact = [p for p in answer["predictions"] if not p["correction"]]
    assert exact and all(p["token"].startswith("fi") and p["word"].startswith("Fi") for p in exact)


def test_a_lower_casing_model_writes_its_words_in_the_persons_case(tiny_model_tag: str) -> None:
    """As typed ("rel" -> "released", "Rel" -> "Released", "REL" -> "RELEASED"), and capitalized
    where a sentence starts, whatever was typed there."""
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    bundle.tokenizer = Tokenizer(TokenizerSettings(lowercase=True))
    predictor = Predictor(bundle, torch.device("cpu"))
    texts = ["the game was rel", "the game was Rel", "the game was REL", "It was . rel", "It was !\n rel", "rel", ""]
    answers = predictor.predict_next([NextWordQuery(text, 3, complete=True, correct_typos=False) for text in texts])
    first = [answer["predictions"][0] for answer in answers]
    token = first[0]["token"]
    assert token.startswith("rel") and all(p["token"] == token for p in first[:6])
    assert [p["word"] for p in first[:6]] == [token, token.title(), token.upper()] + [token.title()] * 3
    assert all(p["word"][0].isupper() for p in answers[-1]["predictions"] if p["word"][0].isalpha())
    (middle,) = predictor.predict_next([NextWordQuery("It was the ", 5)])
    assert any(p["word"][0].islower() for p in middle["predictions"])


def test_a_compound_is_completed_as_one_written_word(tiny_model_tag: str) -> None:
    """ "well-kn" reads as well @-@ kn: the model completes "kn" after "well -", and a person sees
    "well-known", replacing the "well-kn" they typed."""
    predictor = Predictor(load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32), torch.device("cpu"))
    (alone,) = predictor.predict_next([NextWordQuery("It was a well @-@ k", 5, complete=True)])
    (typed,) = predictor.predict_next([NextWordQuery("It was a well-k", 5, complete=True)])
    assert typed["fragment"] == "well-k" and alone["fragment"] == "k"
    assert typed["predictions"], "some word starts with k"
    for compound, part in zip(typed["predictions"], alone["predictions"], strict=True):
        assert compound["word"] == "well-" + part["word"] and compound["token"] == part["token"]
        assert compound["probability"] == part["probability"]


def test_markup_is_offered_as_a_person_writes_it(tiny_model_tag: str) -> None:
    """Whatever the model ranks, no suggestion's word is WikiText markup, and each says how it joins."""
    predictor = Predictor(load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32), torch.device("cpu"))
    texts = ["It was a well", "The score was 1", "The cost was 3", "It was the city", "The"]
    offered = [
        p for answer in predictor.predict_next([NextWordQuery(t, 200) for t in texts]) for p in answer["predictions"]
    ]
    assert {"@-@", "@,@", "@.@"} & {p["token"] for p in offered}, "the tiny model offers some markup here"
    for answer in predictor.predict_next([NextWordQuery(t, 200) for t in texts]):
        written = [p["word"] for p in answer["predictions"]]
        assert len(written) == len(set(written)) == 200  # "," once, from "," or "@,@", whichever is likelier
    for p in offered:
        assert not p["word"].startswith("@"), p
        assert (p["word"], p["joins_previous"], p["joins_next"]) == astuple(shown(p["token"])), p


def test_a_blocklist_and_an_exclude_list_keep_the_true_top_k_of_the_other_words(tiny_model_tag: str) -> None:
    """Blocked by the server or excluded by the request, in another case: the answer is the full
    answer with those words taken out, refilled from below, the probabilities the model's own."""
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    plain = Predictor(bundle, torch.device("cpu"))
    texts = ["the game was", "It was a well", "", "In 1990 , the"]
    full = plain.predict_next([NextWordQuery(text, 60) for text in texts])
    gone = {full[0]["predictions"][i]["word"] for i in (0, 2)} | {"-"}  # "-" is how @-@ is written
    blocking = Predictor(bundle, torch.device("cpu"), blocklist=tuple(word.upper() for word in gone))
    blocked = blocking.predict_next([NextWordQuery(text, 5) for text in texts])
    excluded = plain.predict_next([NextWordQuery(text, 5, exclude=tuple(gone)) for text in texts])
    for whole, by_server, by_request in zip(full, blocked, excluded, strict=True):
        rest = [p for p in whole["predictions"] if p["word"].lower() not in {word.lower() for word in gone}][:5]
        assert by_server["predictions"] == rest and by_request["predictions"] == rest

    fragment = "the game was re"  # all its completions exact ones: 60 is more than start with "re"
    (whole,) = plain.predict_next([NextWordQuery(fragment, 60, complete=True, correct_typos=False)])
    first = whole["predictions"][0]
    (without,) = plain.predict_next([NextWordQuery(fragment, 5, complete=True, exclude=(first["word"],))])
    (blocked_first,) = Predictor(bundle, torch.device("cpu"), blocklist=(first["word"],)).predict_next(
        [NextWordQuery(fragment, 5, complete=True)]
    )
    rest = whole["predictions"][1:6]  # a completion's probabilities stay over all the words that match
    assert without["predictions"] == rest and blocked_first["predictions"] == rest
    assert blocked_first["matching_probability"] == whole["matching_probability"]


def test_generation_never_samples_a_blocked_word(tiny_model_tag: str) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    request = GenerationRequest("the game was", max_new_tokens=20, temperature=0)
    (greedy,) = Predictor(bundle, torch.device("cpu")).generate([request])
    blocklist = tuple(set(greedy.tokens[:3]))
    (other,) = Predictor(bundle, torch.device("cpu"), blocklist=blocklist).generate([request])
    assert other.tokens[0] != greedy.tokens[0] and not set(other.tokens) & set(blocklist)
    sampled = [GenerationRequest("the", max_new_tokens=30, seed=seed) for seed in range(20)]
    drawn = Predictor(bundle, torch.device("cpu"), blocklist=("the", ",", ".")).generate(sampled)
    assert not {token.lower() for generation in drawn for token in generation.tokens} & {"the", ",", "."}


TYPED = "The game was released in North America on the same day as the film"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_answers_from_cached_states_equal_cold_ones_as_a_person_types(tiny_model_tag: str, dtype: torch.dtype) -> None:
    """In the serving precision too (bfloat16 where the CPU has it): the cache stores states in the model's
    dtype, so a prefix resumed from one gets the cold run's answer, completions and generation included."""
    cpu = torch.device("cpu")
    bundle = load_bundle(tiny_model_tag, cpu, dtype)
    shape = (bundle.config.state_slots, bundle.config.num_layers, bundle.config.hidden_size)
    cached = Predictor(bundle, cpu, StateCache(2**20, shape, dtype, cpu))
    cold = Predictor(load_bundle(tiny_model_tag, cpu, dtype), cpu)
    words = TYPED.split()
    for n in range(1, len(words) + 1):
        text = " ".join(words[:n])
        for query in (NextWordQuery(text, 10), NextWordQuery(text + " ", 10), NextWordQuery(text[:-1], 5, True)):
            assert cached.predict_next([query]) == cold.predict_next([query]), query
    assert cached.cache.stats.hits >= len(words) - 1
    read_cached, read_cold = cached.take_tally(), cold.take_tally()
    assert read_cached.read == read_cold.read == read_cold.run  # both read the same; cold ran it all
    assert read_cached.read - read_cached.run == cached.cache.stats.tokens_saved > 0  # the rest came cached
    request = GenerationRequest(TYPED, max_new_tokens=12, temperature=0.9, seed=3)
    assert cached.generate([request]) == cold.generate([request])


def test_scoring_a_text_is_the_fresh_text_evaluation_of_it(tiny_model_tag: str) -> None:
    """``Predictor.score`` (echo with logprobs on /v1/completions) against ``training.fresh_texts``, the
    independent oracle: the same texts' perplexity from the training code's own forward pass."""
    cpu = torch.device("cpu")
    bundle = load_bundle(tiny_model_tag, cpu, torch.float32)
    predictor = Predictor(bundle, cpu)
    texts = ["The game was released in North America .", "He was born in", "the"]
    rows = [predictor.encode(text).ids for text in texts]
    scored = predictor.score(rows, top=3)
    for ids, entries in zip(rows, scored, strict=True):
        assert entries[0] is None and len(entries) == len(ids)  # nothing precedes the first id
        for token, entry in zip(ids[1:], entries[1:], strict=True):
            assert entry.id == token and len(entry.top) == 3
            assert predictor.vocab.unk_id not in dict(entry.top)  # no text spells it: never an alternative
            values = [value for _, value in entry.top]
            assert values == sorted(values, reverse=True) and entry.logprob <= values[0] + 1e-6
    alone = [predictor.score([ids], top=3)[0] for ids in rows]
    for together, single in zip(scored, alone, strict=True):  # padding in a batch changes no row
        assert [e and round(e.logprob, 4) for e in together] == [e and round(e.logprob, 4) for e in single]

    fresh = evaluate_fresh_texts(bundle.model, rows, bundle.vocab, cpu)
    total = sum(entry.logprob for entries in scored for entry in entries[1:])
    count = sum(len(ids) - 1 for ids in rows)
    assert math.exp(-total / count) == pytest.approx(fresh.perplexity, rel=1e-5)


def test_a_generated_tokens_logprobs_are_the_scores_of_the_text_it_makes(tiny_model_tag: str) -> None:
    cpu = torch.device("cpu")
    predictor = Predictor(load_bundle(tiny_model_tag, cpu, torch.float32), cpu)
    request = GenerationRequest("He was born in", max_new_tokens=8, temperature=0.9, seed=5, logprobs=2)
    (generation,) = predictor.generate([request])
    prompt = predictor.encode(request.prompt).ids
    ended = generation.finish_reason is FinishReason.EOS  # the end of the text has an entry too
    assert generation.logprobs is not None and len(generation.logprobs) == len(generation.ids) + ended
    end = [predictor.vocab.end_id] if ended else []
    (scored,) = predictor.score([prompt + list(generation.ids) + end], top=2)
    for made, entry in zip(generation.logprobs, scored[len(prompt) :], strict=True):
        assert made.id == entry.id
        assert made.logprob == pytest.approx(entry.logprob, abs=1e-4)
        assert [i for i, _ in made.top] == [i for i, _ in entry.top]


def test_a_mistyped_fragment_is_completed_with_the_words_one_slip_away(tiny_model_tag: str) -> None:
    """A slip in a word's letters: the word is offered, marked as a correction, after any exact match;
    turned off, the answer is as before; blocked and excluded words are never corrections."""
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    predictor = Predictor(bundle, torch.device("cpu"))
    word = next(w for w in bundle.vocab.words if len(w) >= 6 and w.isalpha() and w.islower())
    typo = word[:2] + word[3] + word[2] + word[4:]  # two keys swapped
    text = f"the game was {typo}"
    (answer,) = predictor.predict_next([NextWordQuery(text, 5, complete=True)])
    offered = answer["predictions"]
    assert word in [p["word"] for p in offered if p["correction"]], offered
    exact = [p for p in offered if not p["correction"]]
    assert offered[: len(exact)] == exact and all(p["word"].startswith(typo) for p in exact)
    corrections = predictor.corrections.of(typo)
    assert len(exact) == answer["matching_words"] < 5 and len(offered) == min(5, len(exact) + len(corrections))
    assert 0 < sum(p["probability"] for p in offered) <= 1 + 1e-6

    (plain,) = predictor.predict_next([NextWordQuery(text, 5, complete=True, correct_typos=False)])
    assert [p["word"] for p in plain["predictions"]] == [p["word"] for p in exact]
    (without,) = predictor.predict_next([NextWordQuery(text, 5, complete=True, exclude=(word,))])
    assert word not in [p["word"] for p in without["predictions"]]
    blocking = Predictor(bundle, torch.device("cpu"), blocklist=(word,))
    (blocked,) = blocking.predict_next([NextWordQuery(text, 5, complete=True)])
    assert word not in [p["word"] for p in blocked["predictions"]]
