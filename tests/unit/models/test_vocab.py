import pytest

from models.tokenizer import END_OF_TEXT, LINE_BREAK, UNK
from models.vocab import Vocabulary


def test_order_is_frequency_then_alphabetical() -> None:
    vocab = Vocabulary.build("b a c b a b d".split())
    assert vocab.words == [UNK, LINE_BREAK, END_OF_TEXT, "b", "a", "c", "d"]


def test_same_tokens_give_same_ids_in_any_order() -> None:
    tokens = "the cat sat on the mat and the dog sat too".split()
    assert Vocabulary.build(tokens).words == Vocabulary.build(list(reversed(tokens))).words


def test_min_freq_and_max_size() -> None:
    tokens = "a a a b b c".split()
    assert Vocabulary.build(tokens, min_freq=2).words == [UNK, LINE_BREAK, END_OF_TEXT, "a", "b"]
    assert Vocabulary.build(tokens, max_size=4).words == [UNK, LINE_BREAK, END_OF_TEXT, "a"]


def test_unknown_words_map_to_unk() -> None:
    vocab = Vocabulary.build("a b".split())
    assert vocab.encode(["a", "zzz", UNK]) == [vocab.index["a"], vocab.unk_id, vocab.unk_id]
    assert vocab.decode(vocab.encode(["b", "a"])) == ["b", "a"]


def test_specials_must_come_first() -> None:
    with pytest.raises(ValueError, match="start with"):
        Vocabulary(["a", UNK, LINE_BREAK])


def test_a_vocabulary_saved_before_end_of_text_still_loads() -> None:
    old = Vocabulary([UNK, LINE_BREAK, "a", "b"])
    assert old.end_id is None and old.special_ids == [0, 1]
    new = Vocabulary.build("a b".split())
    assert new.end_id == 2 and new.special_ids == [0, 1, 2]
