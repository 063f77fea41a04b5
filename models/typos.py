"""Slips of the finger: what a person may have meant to type when a fragment matches few words.

A typo is one slip (the model of typos the benchmarks use too, ``bench/typos.py``): a key next to
the intended one pressed instead (a substitution), a neighbouring key pressed as well (an extra
letter), a key missed, or two keys swapped. The keyboard is QWERTY. Undoing one slip of a typed
fragment gives the prefixes the person may have meant; the words that start with one of them are
the corrections a completion can offer, each weighted by how likely its slip is, so that a
correction's rank is its probability under the model times its slip's weight.

Substitutions by a key that is not adjacent are counted too, with a lower weight: people also
confuse letters they do not reach for by mistake ("goverment" misses a letter; "recieve" swaps two).

Usage::

    slips = intended_prefixes("recie")  # {"recei": -4.6, "reci": -4.6, "rexie": -4.6, ..., "rebie": -6.9, ...}
    # each prefix the person may have meant, with its slip's log-weight against no slip
"""

from __future__ import annotations

import math

QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# Where each row starts, in key widths from the left of the top row: a staggered keyboard.
ROW_OFFSETS = (0.0, 0.25, 0.75)
LETTERS = "".join(QWERTY_ROWS)

# Log-weights of the slips against typing the word right (0): a slip is rare (people mistype a few
# words in a hundred, at one of several letters, with one of several keys), so a correction's
# probability is the model's times about a hundredth. A key that is not adjacent is seldom hit by
# mistake, but letters are confused in spelling too: a tenth of that again.
SLIP = math.log(0.01)
ADJACENT_KEY = SLIP
EXTRA_KEY = SLIP
MISSED_KEY = SLIP
SWAPPED_KEYS = SLIP
OTHER_KEY = SLIP + math.log(0.1)
# Fragments shorter than this are not corrected: one letter has too many neighbours to tell.
MIN_CORRECTED_CHARACTERS = 2


def _adjacent_keys() -> dict[str, frozenset[str]]:
    """Each letter's neighbours on the keyboard: keys whose centres are within 1.25 key widths."""
    position = {
        key: (column + ROW_OFFSETS[row], float(row))
        for row, keys in enumerate(QWERTY_ROWS)
        for column, key in enumerate(keys)
    }
    return {
        key: frozenset(
            other
            for other, (x, y) in position.items()
            if other != key and math.hypot(x - position[key][0], y - position[key][1]) <= 1.25
        )
        for key in position
    }


ADJACENT = _adjacent_keys()


def is_adjacent(typed: str, intended: str) -> bool:
    """Whether ``typed`` is a key next to ``intended`` (either case)."""
    return typed.lower() in ADJACENT.get(intended.lower(), frozenset())


def intended_prefixes(fragment: str) -> dict[str, float]:
    """The prefixes one slip away from ``fragment``, each with its slip's log-weight (the best one
    where two slips give the same prefix). Letters keep the case of the letter they stand beside."""
    found: dict[str, float] = {}

    def add(prefix: str, weight: float) -> None:
        if prefix and prefix != fragment and weight > found.get(prefix, -math.inf):
            found[prefix] = weight

    for i, typed in enumerate(fragment):
        before, after = fragment[:i], fragment[i + 1 :]
        add(before + after, EXTRA_KEY)  # the letter typed was one too many
        if typed.isalpha():
            for letter in LETTERS:
                if letter != typed.lower():
                    written = letter.upper() if typed.isupper() else letter
                    add(before + written + after, ADJACENT_KEY if is_adjacent(typed, letter) else OTHER_KEY)
            for letter in LETTERS:  # a letter missed before this one
                written = letter.upper() if typed.isupper() else letter
                add(before + written + typed + after, MISSED_KEY)
        if i + 1 < len(fragment) and fragment[i + 1] != typed:
            add(before + fragment[i + 1] + typed + fragment[i + 2 :], SWAPPED_KEYS)
    return found
