"""The sorted word index that completing a partly typed word reads: a fragment is one span of places."""

from __future__ import annotations

from models.completion import PrefixIndex
from models.vocab import Vocabulary


def test_a_fragment_is_one_span_of_the_sorted_words() -> None:
    vocab = Vocabulary(["<unk>", "<eos>", "the", "release", "released", "relatively", "Rel", "real", "é", "éte"])
    index = PrefixIndex(vocab)
    low, high = index.span("rel")
    assert sorted(vocab.words[i] for i in index.sorted_ids[low:high]) == ["relatively", "release", "released"]
    assert [vocab.words[i] for i in index.sorted_ids[slice(*index.span("Rel"))]] == ["Rel"]  # exact case
    assert [vocab.words[i] for i in index.sorted_ids[slice(*index.span("é"))]] == ["é", "éte"]
    low, high = index.span("released")
    assert high - low == 1 and index.sorted_ids[low] == vocab.index["released"]
    assert index.span("zz")[0] == index.span("zz")[1]  # nothing starts with it: an empty span
    assert index.span("") == (0, index.size)  # every word, and no special token
    assert index.places.tolist()[:2] == [index.size, index.size]  # <unk>, <eos> in no span
