"""Keystroke savings: the vectorized simulation against a plain count of the protocol, word by word,
for each way of choosing the shown words."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.bundle import load_bundle
from models.vocab import SPECIALS
from training.corpus import load_corpus
from training.data import EVAL_BATCH_SIZE, EVAL_BPTT, batchify, bptt_windows, encode_stream
from training.keystrokes import SHOWN, TypingTally, simulate_typing


def test_simulated_typing_matches_the_protocol_counted_by_hand(tiny_model_tag: str, tiny_corpus_file: Path) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    vocab = bundle.vocab
    # The split's last 800 tokens: they end with the end of the text, <eot>, which nobody types.
    stream = encode_stream(load_corpus(str(tiny_corpus_file)).test, bundle.tokenizer, vocab)[-800:]
    assert vocab.end_id in stream.tolist()
    result = simulate_typing(bundle.model, stream, vocab, torch.device("cpu"))

    # The protocol: the special tokens (unknown word, line break, end of text) are never typed nor suggested.
    specials = set(SPECIALS)
    words = [w for w in vocab.words if w not in specials]
    without = with_suggestions = counted = 0
    hits = {(j, k): 0 for j in range(3) for k in (1, SHOWN)}
    longer = dict.fromkeys(range(3), 0)
    state = bundle.model.zero_state(EVAL_BATCH_SIZE)
    with torch.inference_mode():
        for inputs, targets in bptt_windows(batchify(stream, EVAL_BATCH_SIZE), EVAL_BPTT):
            logits, state = bundle.model(inputs, state)
            flat = logits.reshape(-1, len(vocab)).float().tolist()
            for scores, target in zip(flat, targets.reshape(-1).tolist(), strict=True):
                word = vocab.words[target]
                if word in specials:
                    continue
                beating = [w for w in words if scores[vocab.index[w]] > scores[target]]
                ranks = [sum(w.startswith(word[:j]) for w in beating) for j in range(len(word))]
                shown = [j for j, rank in enumerate(ranks) if rank < SHOWN]
                counted += 1
                without += len(word) + 1
                with_suggestions += shown[0] + 1 if shown else len(word) + 1
                for j in range(min(3, len(word))):
                    longer[j] += 1
                    hits[j, 1] += ranks[j] < 1
                    hits[j, SHOWN] += ranks[j] < SHOWN
    assert result.words == counted > 400
    assert result.keystroke_savings == 1 - with_suggestions / without
    assert 0 < result.keystroke_savings < 1
    assert result.next_word_top1 == hits[0, 1] / longer[0] and result.next_word_top3 == hits[0, SHOWN] / longer[0]
    assert result.after_1_letter_top1 == hits[1, 1] / longer[1]
    assert result.after_1_letter_top3 == hits[1, SHOWN] / longer[1]
    assert result.after_2_letters_top1 == hits[2, 1] / longer[2]
    assert result.after_2_letters_top3 == hits[2, SHOWN] / longer[2]


@pytest.mark.parametrize(
    ("ranking", "hide_passed"), [("probability", True), ("keystrokes", False), ("keystrokes", True)]
)
def test_other_choices_match_the_protocol_counted_by_hand(tiny_model_tag: str, ranking: str, hide_passed: bool) -> None:
    """Words shown by expected keystrokes saved, and with the words shown at earlier letters left out:
    ``TypingTally`` against choosing the shown words one letter at a time, on random scores."""
    vocab = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32).vocab
    generator = torch.Generator().manual_seed(7)
    typable = [i for i, w in enumerate(vocab.words) if w not in set(SPECIALS)]
    target = torch.tensor(typable)[torch.randint(len(typable), (300,), generator=generator)]
    logits = torch.randn(300, len(vocab), generator=generator) * 3
    tally = TypingTally(vocab, torch.device("cpu"), ranking, hide_passed)
    tally.add(logits, target, torch.zeros_like(target))

    words = {i: vocab.words[i] for i in typable}
    without = with_suggestions = 0
    for scores, t in zip(logits.tolist(), target.tolist(), strict=True):
        word, passed, cost = words[t], set(), len(words[t]) + 1
        for j in range(len(word)):
            left = {i: max(len(w) - j, 1) for i, w in words.items() if w.startswith(word[:j]) and i not in passed}
            value = {i: scores[i] + (math.log(n) if ranking == "keystrokes" else 0.0) for i, n in left.items()}
            shown = sorted(value, key=value.get, reverse=True)[:SHOWN]
            if t in shown:
                cost = j + 1
                break
            if hide_passed:
                passed |= set(shown)
        without += len(word) + 1
        with_suggestions += cost
    assert tally.result().keystroke_savings == pytest.approx(1 - with_suggestions / without)
