"""bench.people's search for the most typists held, against servers whose limit is known."""

import pytest

from bench import people


@pytest.mark.parametrize("limit", [1, 7, 40, 168, 216, 900])
@pytest.mark.parametrize(("first_guess", "step"), [(8, 2.0), (168, people.STEP), (500, people.STEP)])
def test_the_search_finds_the_limit_to_within_5_percent(
    monkeypatch: pytest.MonkeyPatch, limit: int, first_guess: int, step: float
) -> None:
    tried: list[int] = []

    def holds(url, count, words, seconds, round_number, protocol):
        tried.append(count)
        return count <= limit, 10.0 if count <= limit else 30.0

    monkeypatch.setattr(people, "holds", holds)
    found = people.capacity("http://127.0.0.1:1", [], 10, "server", first_guess, step)
    assert limit - max(1, limit // 20) <= found["typists"] <= limit
    assert len(tried) == len(set(tried))  # no count tried twice
    assert sorted(map(int, found["tried_p99_ms"])) == sorted(tried)


def test_a_keystroke_reaches_triton_as_the_same_inputs() -> None:
    body = people.keystroke_body("the game was", 5)
    assert body == {"inputs": [{"text": "the ga", "top_k": 3, "complete": True}]}
    tensors = {t["name"]: t["data"] for t in people.as_triton(body)["inputs"]}
    assert tensors == {"text": ["the ga"], "top_k": [3], "complete": [True]}
