"""Text other than WikiText, over HTTP: a play, with speakers' tags, short lines and elisions.

A tiny model is trained in the test session on a play-shaped text made
here, saved to the store and served; line breaks must survive the whole way.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import serving, train_tiny
from tests.http_calls import generate, predict

pytestmark = pytest.mark.slow

SPEAKERS = ["ROMEO", "JULIET", "NURSE", "MERCUTIO"]
WORDS = "thou thee thy love night day sweet fair heart moon doth hath not my the a and to of in".split()
ELISIONS = ["'tis", "o'er", "ne'er", "e'en", "'twas"]


def play_text(lines: int, seed: int = 0) -> str:
    """Speeches: a speaker's tag line (``ROMEO:``), one to three short lines, a blank line."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < lines:
        out.append(f"{rng.choice(SPEAKERS)}:")
        for _ in range(rng.randint(1, 3)):
            words = [rng.choice(WORDS + ELISIONS) for _ in range(rng.randint(3, 7))]
            out.append(" ".join(words).capitalize() + rng.choice([",", ".", "!", "?", ";"]))
        out.append("")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def play_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return train_tiny(play_text(4000), tmp_path_factory.mktemp("play"), "nextword-play", epochs=2)


@pytest.fixture(scope="module")
def play(play_model: str) -> Iterator[httpx.Client]:
    with serving(play_model) as client:
        yield client


def test_a_line_break_after_a_speakers_tag_is_reported_not_hidden(play: httpx.Client) -> None:
    tag, inside, completing = predict(
        play,
        {"text": "ROMEO:", "top_k": 5},
        {"text": "ROMEO:\nThou", "top_k": 5},
        {"text": "ROMEO:\nne", "complete": True, "correct_typos": False},
    )
    assert tag["line_break_probability"] > 0.5  # every tag line ends there
    assert inside["line_break_probability"] < 0.2
    assert completing["line_break_probability"] is None
    assert tag["tokens"] == 2 and inside["tokens"] == 4  # the line break in a prompt is a token
    offered = {p["word"] for answer in (tag, inside, completing) for p in answer["predictions"]}
    assert not offered & {"<eos>", "<eot>", "<unk>", "'"}
    assert [p["word"] for p in completing["predictions"]] == ["ne'er"]


def test_generate_continues_through_line_breaks(play: httpx.Client) -> None:
    for seed in range(3):
        (result,) = generate(play, {"prompt": "ROMEO:", "max_new_tokens": 40, "seed": seed})
        assert result["finish_reason"] == "length", result
        assert result["text"].startswith("\n") and result["text"].count("\n") >= 2
        assert "<eos>" in result["tokens"] and "' " not in result["text"]


def test_a_line_break_stop_string_ends_the_line(play: httpx.Client) -> None:
    (result,) = generate(play, {"prompt": "JULIET:\n", "max_new_tokens": 40, "seed": 1, "stop": ["\n"]})
    assert result["finish_reason"] == "stop"
    assert result["text"].endswith("\n") and result["text"].count("\n") == 1 and len(result["tokens"]) > 1


def test_the_text_round_trips_through_the_service(play: httpx.Client) -> None:
    """Generated text read back as a prompt gives the same tokens: generation writes what the tokenizer reads.

    (A continuation comes without the space before its first word.)
    """
    for seed in range(3):
        (first,) = generate(play, {"prompt": "NURSE:\n'Tis", "max_new_tokens": 30, "seed": seed})
        (again,) = predict(play, {"text": "NURSE:\n'Tis " + first["text"]})
        assert again["tokens"] == 4 + len(first["tokens"]), first
