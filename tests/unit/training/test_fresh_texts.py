"""Fresh texts: each text typed alone from an empty state, against a plain count of every figure's definition."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.bundle import load_bundle
from models.tokenizer import Tokenizer
from training.corpus import load_corpus
from training.fresh_texts import (
    CHAIN_STEPS,
    START_WORDS,
    encode_texts,
    evaluate_fresh_texts,
    repeat_period,
    split_texts,
)
from training.keystrokes import SHOWN


def test_texts_are_sentences_without_headings() -> None:
    lines = [
        " = Robert Boulter = ",
        "",
        " Robert Boulter is an English actor . He had a role in 2000 ! Was it good ? Yes",
        " = = Career = = ",
        " In 2006 , Boulter starred .",
    ]
    texts = split_texts(lines, Tokenizer())
    assert texts == [
        ["Robert", "Boulter", "is", "an", "English", "actor", "."],
        ["He", "had", "a", "role", "in", "2000", "!"],
        ["Was", "it", "good", "?"],
        ["Yes"],
        ["In", "2006", ",", "Boulter", "starred", "."],
    ]


@pytest.mark.parametrize(
    ("words", "begin", "period"),
    [
        ([1, 2, 3, 4, 5], 2, 0),
        ([1, 2, 3, 3, 5], 2, 1),
        ([1, 2, 3, 2, 3], 2, 2),
        ([7, 7, 1, 2, 3], 2, 0),  # the repeat ends before the chain begins
        ([7, 7, 1, 2, 3], 1, 1),
        ([1, 2, 3, 1, 2, 3], 3, 3),
    ],
)
def test_repeat_period(words: list[int], begin: int, period: int) -> None:
    assert repeat_period(words, begin) == period


def test_fresh_figures_match_a_plain_count(tiny_model_tag: str, tiny_corpus_file: Path) -> None:
    """Every text from the zero state, one token a step, ranked and counted word by word in Python."""
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    model, vocab = bundle.model, bundle.vocab
    texts = encode_texts(split_texts(load_corpus(str(tiny_corpus_file)).test, bundle.tokenizer), vocab)[:60]
    result = evaluate_fresh_texts(model, texts, vocab, torch.device("cpu"))

    specials = {"<unk>", "<eos>", "<eot>"}
    words = [w for w in vocab.words if w not in specials]
    without = with_suggestions = counted = echoes = scored = 0
    loss = 0.0
    top1 = top3 = 0
    with torch.inference_mode():
        for text in texts:
            if len(text) < 2:
                continue
            state = model.zero_state(1)
            for previous, target in zip(text, text[1:], strict=False):
                logits, state = model(torch.tensor([[previous]]), state)
                scores = logits[0, -1].float()
                loss -= scores.log_softmax(-1)[target].item()
                scored += 1
                word = vocab.words[target]
                if word in specials:
                    continue
                listed = scores.tolist()
                beating = [w for w in words if listed[vocab.index[w]] > listed[target]]
                ranks = [sum(w.startswith(word[:j]) for w in beating) for j in range(len(word))]
                shown = [j for j, rank in enumerate(ranks) if rank < SHOWN]
                counted += 1
                without += len(word) + 1
                with_suggestions += shown[0] + 1 if shown else len(word) + 1
                top1 += ranks[0] < 1
                top3 += ranks[0] < SHOWN
                best = max(words, key=lambda w: (listed[vocab.index[w]], -vocab.index[w]))
                echoes += vocab.index[best] == previous
    typing = result.typing
    assert typing.words == counted > 300
    assert typing.keystroke_savings == pytest.approx(1 - with_suggestions / without, abs=1e-12)
    assert typing.next_word_top1 == top1 / counted and typing.next_word_top3 == top3 / counted
    assert typing.echo_rate == echoes / counted
    assert result.perplexity == pytest.approx(math.exp(loss / scored), rel=1e-4)


def test_accept_chains_match_a_plain_count(tiny_model_tag: str, tiny_corpus_file: Path) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    model, vocab = bundle.model, bundle.vocab
    texts = encode_texts(split_texts(load_corpus(str(tiny_corpus_file)).test, bundle.tokenizer), vocab)[:40]
    chains = evaluate_fresh_texts(model, texts, vocab, torch.device("cpu")).chains

    starts = []
    for text in texts:
        if len(text) > START_WORDS and text[: 1 + START_WORDS] not in starts:
            starts.append(text[: 1 + START_WORDS])
    special_ids = set(vocab.special_ids)
    back_to_back = cycles = 0
    with torch.inference_mode():
        for start in starts:
            logits, state = model(torch.tensor([start]), model.zero_state(1))
            chain = list(start)
            for _ in range(CHAIN_STEPS):
                listed = logits[0, -1].float().tolist()
                best = max((i for i in range(len(vocab)) if i not in special_ids), key=lambda i: (listed[i], -i))
                chain.append(best)
                logits, state = model(torch.tensor([[best]]), state)
            accepted_from = 1 + START_WORDS
            repeats = [
                period
                for period in range(1, len(chain) // 2 + 1)
                for end in range(accepted_from, len(chain))
                if end + 1 >= 2 * period
                and chain[end + 1 - period : end + 1] == chain[end + 1 - 2 * period : end + 1 - period]
            ]
            back_to_back += 1 in repeats
            cycles += bool(repeats)
    assert chains.chains == len(starts) > 10
    assert chains.back_to_back == back_to_back / len(starts)
    assert chains.cycles == cycles / len(starts)
    assert len(chains.examples) == 5 and all(" | " in example for example in chains.examples)
