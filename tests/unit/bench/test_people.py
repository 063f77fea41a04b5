"""bench.people's search for the most typists held, against servers whose limit is known."""

import pytest

from bench import people


@pytest.mark.parametrize("limit", [1, 7, 40, 168, 216, 900])
@pytest.mark.parametrize(("first_guess", "step"), [(8, 2.0), (168, people.STEP), (500, people.STEP)])
def test_the_search_finds_the_limit_to_within_5_percent(limit: int, first_guess: int, step: float) -> None:
    search = people.Search(first_guess, step)
    tried = []
    while not search.done:
        tried.append(search.count)
        search.record(search.count <= limit, 10.0 if search.count <= limit else 30.0)
    found = search.result()
    assert limit - max(1, limit // 20) <= found["typists"] <= limit
    assert len(tried) == len(set(tried))  # no count tried twice
    assert sorted(map(int, found["tried_p99_ms"])) == sorted(tried)


def test_servers_searched_together_take_turns_on_the_same_passages(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"http://a/predict_next": 100, "http://b/predict_next": 30}
    tries: list[tuple[str, int, int]] = []

    def holds(url, count, words, seconds, round_number, protocol):
        tries.append((url, count, round_number))
        return count <= limits[url], 10.0

    monkeypatch.setattr(people, "holds", holds)
    urls = {"a": "http://a/predict_next", "b": "http://b/predict_next"}
    found = people.capacity(urls, [], 10)
    assert 95 <= found["a"]["typists"] <= 100 and 29 <= found["b"]["typists"] <= 30
    # While both search, each try of one is next to a try of the other, on the same passages (round number).
    both = [t for t in tries if t[2] < min(len(found["a"]["tried_p99_ms"]), len(found["b"]["tried_p99_ms"]))]
    for first, second in zip(both[::2], both[1::2], strict=True):
        assert {first[0], second[0]} == set(urls.values()) and first[2] == second[2]


def test_a_keystroke_reaches_triton_as_the_same_inputs() -> None:
    body = people.keystroke_body("the game was", 5)
    assert body == {"inputs": [{"text": "the ga", "top_k": 3, "complete": True}]}
    tensors = {t["name"]: t["data"] for t in people.as_triton(body)["inputs"]}
    assert tensors == {"text": ["the ga"], "top_k": [3], "complete": [True]}
