import pytest

from models.tokenizer import EOS, UNK
from models.vocab import Vocabulary


def test_order_is_frequency_then_alphabetical() -> None:
    vocab = Vocabulary.build("b a c b a b d".split())
    assert vocab.words == [UNK, EOS, "b", "a", "c", "d"]


def test_same_tokens_give_same_ids_in_any_order() -> None:
    tokens = "the cat sat on the mat and the dog sat too".split()
    assert Vocabulary.build(tokens).words == Vocabulary.build(list(reversed(tokens))).words


def test_min_freq_and_max_size() -> None:
    tokens = "a a a b b c".split()
    assert Vocabulary.build(tokens, min_freq=2).words == [UNK, EOS, "a", "b"]
    assert Vocabulary.build(tokens, max_size=3).words == [UNK, EOS, "a"]


def test_unknown_words_map_to_unk() -> None:
    vocab = Vocabulary.build("a b".split())
    assert vocab.encode(["a", "zzz", UNK]) == [vocab.index["a"], vocab.unk_id, vocab.unk_id]
    assert vocab.decode(vocab.encode(["b", "a"])) == ["b", "a"]


def test_specials_must_come_first() -> None:
    with pytest.raises(ValueError, match="start with"):
        Vocabulary(["a", UNK, EOS])
