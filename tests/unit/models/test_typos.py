"""Slips of the finger: the prefixes a person may have meant, and the words they open."""

from __future__ import annotations

from models.completion import Corrections, PrefixIndex
from models.typos import ADJACENT, OTHER_KEY, SLIP, intended_prefixes
from models.vocab import Vocabulary


def test_the_keyboard_neighbours_are_the_keys_around_a_key() -> None:
    assert ADJACENT["q"] == {"w", "a"}
    assert {"r", "t", "y", "f", "h", "c", "v", "b"} >= ADJACENT["g"] >= {"f", "h", "t", "y", "v", "b"}
    assert "p" not in ADJACENT["a"] and all(key in ADJACENT[other] for key in ADJACENT for other in ADJACENT[key])


def test_each_kind_of_slip_is_undone() -> None:
    meant = intended_prefixes("recie")
    assert meant["recei"] == SLIP < 0.0  # two keys swapped: less likely than no slip
    assert meant["rexie"] == SLIP  # an adjacent key: c and x are neighbours
    assert meant["rece"] == SLIP  # a key pressed as well
    assert meant["receie"] == SLIP and meant["rwcie"] == SLIP  # a key missed; an adjacent key
    assert meant["repie"] == OTHER_KEY < SLIP  # p is far from c: a spelling slip, less likely
    assert "recie" not in meant and "" not in intended_prefixes("a")


def test_letters_keep_the_case_of_the_letter_they_replace() -> None:
    meant = intended_prefixes("Amercia")
    assert "America" in meant and "Smercia" in meant and not any(p.startswith("smer") for p in meant)


def test_corrections_are_the_words_one_slip_away_that_do_not_match_exactly() -> None:
    vocab = Vocabulary(["<unk>", "<eos>", "government", "governor", "gold", "govern", "receive", "recipe", "go"])
    found = Corrections(PrefixIndex(vocab)).of("goverm")
    assert {vocab.words[i] for i in found} == {"government", "governor", "govern"}
    assert {vocab.words[i] for i in Corrections(PrefixIndex(vocab)).of("recie")} == {"receive", "recipe"}
    assert Corrections(PrefixIndex(vocab)).of("g") == {}  # one letter: too many neighbours to tell
    assert "recipe" not in {vocab.words[i] for i in Corrections(PrefixIndex(vocab)).of("reci")}  # exact already
