"""Keystroke savings: the vectorized simulation against a plain count of the protocol, word by word."""

from __future__ import annotations

from pathlib import Path

import torch

from models.bundle import load_bundle
from models.vocab import SPECIALS
from training.corpus import load_corpus
from training.data import EVAL_BATCH_SIZE, EVAL_BPTT, batchify, bptt_windows, encode_stream
from training.keystrokes import SHOWN, simulate_typing


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
