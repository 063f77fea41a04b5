"""Embedding dropout: every occurrence of a dropped word, only while training."""

from __future__ import annotations

import torch

from models.rnn import ModelConfig, RecurrentLM
from training.word_drop import add_word_drop


def test_word_drop_zeroes_every_occurrence_of_a_dropped_word_only_while_training() -> None:
    model = RecurrentLM(ModelConfig(vocab_size=400, embedding_dim=8, hidden_size=8, softmax_cutoffs=(100, 200)))
    ids = torch.randint(0, 400, (6, 50))
    model.eval()
    plain = model.embedding(ids)
    hook = add_word_drop(model, 0.5, 400)
    model.train()
    dropped = model.embedding(ids)
    zeroed = dropped.abs().sum(-1) == 0  # (B, T)
    assert 0.3 < zeroed.float().mean().item() < 0.7
    for word in ids.unique().tolist():  # a word is dropped everywhere in the window or nowhere
        assert zeroed[ids == word].all() or not zeroed[ids == word].any()
    torch.testing.assert_close(dropped[~zeroed], plain[~zeroed] * 2)  # the kept ones scaled by 1 / (1 - p)
    model.eval()
    assert torch.equal(model.embedding(ids), plain)
    hook.remove()
    model.train()
    assert torch.equal(model.embedding(ids), plain)
