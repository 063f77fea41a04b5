"""The chat corpus from the installed chitchat_dataset package: checked, split by conversation and time."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.tokenizer import Tokenizer
from training import chitchat
from training.corpus import CorpusError, load_corpus
from training.download import mixed_corpus
from training.fresh_texts import split_texts


@pytest.fixture(scope="module")
def conversations() -> list[chitchat.Conversation]:
    return chitchat.read_conversations(chitchat.dataset_path())


def test_the_split_keeps_test_and_personal_conversations_out_of_training(
    conversations: list[chitchat.Conversation],
) -> None:
    chat = chitchat.split(conversations)
    ids = {name: {c.id for c in getattr(chat, name)} for name in ("train", "valid", "test")}
    assert not ids["train"] & ids["valid"] and not ids["train"] & ids["test"] and not ids["valid"] & ids["test"]
    # By time: every test conversation starts after every training one.
    assert max(c.start for c in chat.train) <= min(c.start for c in chat.valid) <= min(c.start for c in chat.test)
    people = set(chat.personal)
    assert len(people) == chitchat.PERSONAL_SENDERS
    assert not any(c.senders & people for name in ("train", "valid", "test") for c in getattr(chat, name))
    withheld = len(conversations) - sum(len(ids[name]) for name in ids)
    assert 0 < withheld < len(conversations) / 4  # the personal people's conversations, and only those
    for person, split in chat.personal.items():
        assert split.test and all(split.test) and sum(len(c) for c in split.history) > 0, person
    assert chitchat.split(conversations).personal == chat.personal  # reproducible


def test_the_corpus_is_one_message_a_line_and_each_message_a_text(
    tmp_path: Path, conversations: list[chitchat.Conversation]
) -> None:
    folder = chitchat.materialize(tmp_path / "chat")
    corpus = load_corpus(folder)
    assert corpus.texts == "lines"
    texts = split_texts(corpus.test, Tokenizer(), corpus.texts)
    assert len(texts) == sum(1 for line in corpus.test if line.strip()) > 20_000
    assert "" in corpus.test  # an empty line between conversations
    assert set(chitchat.load_personal(folder)) == set(
        chitchat.split(chitchat.read_conversations(chitchat.dataset_path())).personal
    )
    assert chitchat.materialize(tmp_path / "chat") == folder  # written once


def test_a_missing_or_different_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chitchat, "PACKAGE", "no_such_package_for_nextword")
    with pytest.raises(CorpusError, match="pip install"):
        chitchat.dataset_path()
    monkeypatch.setattr(chitchat, "PACKAGE", "chitchat_dataset")
    monkeypatch.setattr(chitchat, "VERSION", "0.1.0")
    with pytest.raises(CorpusError, match="pinned to 0.1.0"):
        chitchat.dataset_path()
    monkeypatch.setattr(chitchat, "VERSION", "0.9.0")
    monkeypatch.setattr(chitchat, "DATASET_SHA256", "0" * 64)
    with pytest.raises(CorpusError, match="not the pinned dataset"):
        chitchat.dataset_path()


def test_the_mixed_corpus_holds_both_trains_and_the_chat_test(tmp_path: Path, wikitext_dir: Path) -> None:
    chat_folder = chitchat.materialize(tmp_path / "chat")
    wiki, chat = load_corpus(wikitext_dir), load_corpus(chat_folder)
    mixed = load_corpus(mixed_corpus(tmp_path / "mixed", wikitext_dir, chat_folder))
    assert mixed.texts == "lines"
    assert mixed.train[:1000] == wiki.train[:1000] and mixed.train[-len(chat.train) :] == chat.train
    assert mixed.valid[-len(chat.valid) :] == chat.valid and mixed.test == chat.test
