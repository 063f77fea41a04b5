"""The prefix state cache alone: longest-prefix lookup, exact states back, LRU eviction within its bytes.

The oracle is a plain ordered list of (ids, state) pairs kept by the test
itself, least recently used first, with the cache's documented cost per
entry; the HTTP tests (tests/server/test_engine.py) check that a served
answer from a cached state equals a cold one.
"""

from __future__ import annotations

import random
from array import array

import pytest
import torch

from service.engine.state_cache import ENTRY_OVERHEAD_BYTES, ID_BYTES, StateCache, last_writer_per_slot

SHAPE = (2, 1, 4)  # (slots, layers, hidden)
CPU = torch.device("cpu")


def state_for(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A state (S, L, 1, H) and output (1, H) that name their ids, so a wrong slot shows."""
    seed = float(sum((i + 1) * 31**n for n, i in enumerate(ids)) % 10_007)
    state = torch.arange(8, dtype=torch.float32).reshape(2, 1, 1, 4) + seed
    return state, torch.full((1, 4), seed)


def entry_bytes(cache: StateCache, ids: list[int]) -> int:
    return cache.slot_bytes + len(ids) * ID_BYTES + ENTRY_OVERHEAD_BYTES


def test_a_stored_prefix_is_found_and_its_state_comes_back_exactly() -> None:
    cache = StateCache(2**20, SHAPE, torch.float32, CPU)
    state, hidden = state_for([1, 2, 3])
    cache.store([[1, 2, 3]], state, hidden)
    cached, slot = cache.find([1, 2, 3, 4, 5])
    assert cached == 3 and slot != 0
    loaded_state, loaded_hidden = cache.load([slot])
    assert torch.equal(loaded_state, state) and torch.equal(loaded_hidden, hidden)
    assert cache.find([1, 2]) == (0, 0)  # a shorter text than any key: nothing cached
    assert cache.find([9, 1, 2, 3]) == (0, 0)  # the key must be a prefix, not any run of ids


def test_slot_zero_is_the_zero_state() -> None:
    cache = StateCache(2**20, SHAPE, torch.float32, CPU)
    state, hidden = cache.load([0, 0])
    assert state.shape == (2, 1, 2, 4) and hidden.shape == (2, 4)
    assert not state.any() and not hidden.any()


def test_the_longest_of_several_cached_prefixes_wins() -> None:
    cache = StateCache(2**20, SHAPE, torch.float32, CPU)
    for ids in ([5], [5, 6], [5, 6, 7, 8]):
        cache.store([ids], *state_for(ids))
    assert cache.find([5, 6, 7, 9])[0] == 2
    assert cache.find([5, 6, 7, 8, 9])[0] == 4
    stats = cache.take_stats()
    assert (stats.hits, stats.misses, stats.tokens_saved) == (2, 0, 6)
    assert cache.take_stats().hits == 0  # counting starts afresh


def test_a_batch_stores_each_row_from_its_own_column() -> None:
    cache = StateCache(2**20, SHAPE, torch.float32, CPU)
    rows = [[1], [2, 3], [4, 5, 6]]
    states, hiddens = zip(*(state_for(ids) for ids in rows), strict=True)
    cache.store(rows, torch.cat(states, dim=2), torch.cat(hiddens))
    found = [cache.find(ids) for ids in rows]
    state, hidden = cache.load([slot for _, slot in found])
    assert torch.equal(state, torch.cat(states, dim=2)) and torch.equal(hidden, torch.cat(hiddens))


@pytest.mark.parametrize("seed", range(5))
def test_random_use_matches_an_lru_list_within_the_byte_bound(seed: int) -> None:
    rng = random.Random(seed)
    probe = StateCache(0, SHAPE, torch.float32, CPU)
    capacity = 6 * entry_bytes(probe, [0] * 3)  # room for a handful of short keys
    cache = StateCache(capacity, SHAPE, torch.float32, CPU)
    held: list[list[int]] = []  # the oracle: keys, least recently used first
    for _ in range(300):
        ids = [rng.randrange(4) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.5:
            expected = max((len(key) for key in held if ids[: len(key)] == key), default=0)
            cached, slot = cache.find(ids)
            assert cached == expected
            if cached:
                key = ids[:cached]
                held.remove(key)
                held.append(key)
                state, hidden = cache.load([slot])
                assert torch.equal(hidden, state_for(key)[1])
        else:
            cache.store([ids], *state_for(ids))
            if ids in held:
                held.remove(ids)
            else:
                while sum(entry_bytes(cache, key) for key in held) + entry_bytes(cache, ids) > capacity:
                    held.pop(0)
            held.append(ids)
        assert sorted(held) == sorted(list(key) for key in map(unpack, cache.entries))
        assert cache.bytes == sum(entry_bytes(cache, key) for key in held) <= capacity


def test_an_entry_larger_than_the_whole_cache_is_not_stored() -> None:
    probe = StateCache(0, SHAPE, torch.float32, CPU)
    cache = StateCache(entry_bytes(probe, [1]), SHAPE, torch.float32, CPU)
    cache.store([[1, 2, 3]], *state_for([1, 2, 3]))
    assert not cache.entries and cache.bytes == 0
    cache.store([[1]], *state_for([1]))
    assert cache.find([1, 2])[0] == 1


def unpack(key: bytes) -> list[int]:
    return array("i", key).tolist()


def test_a_batch_larger_than_the_cache_keeps_its_last_rows_each_in_a_slot_of_its_own() -> None:
    probe = StateCache(0, SHAPE, torch.float32, CPU)
    cache = StateCache(3 * entry_bytes(probe, [0]), SHAPE, torch.float32, CPU)
    rows = [[i] for i in range(7)]  # 7 one-id prefixes, room for 3
    states, hiddens = zip(*(state_for(ids) for ids in rows), strict=True)
    cache.store(rows, torch.cat(states, dim=2), torch.cat(hiddens))
    assert sorted(map(unpack, cache.entries)) == [[4], [5], [6]]
    assert len(set(cache.entries.values())) == 3  # three different slots
    for ids in ([4], [5], [6]):
        _, slot = cache.find(ids)
        assert torch.equal(cache.load([slot])[1], state_for(ids)[1])


def test_a_reused_slot_is_written_once_by_its_last_row() -> None:
    """What store hands to one index_copy_: no slot twice, since CUDA leaves the order of repeats undefined."""
    assert last_writer_per_slot([0, 1, 2, 3], [5, 6, 5, 7]) == ([2, 1, 3], [5, 6, 7])
    assert last_writer_per_slot([0, 1], [3, 4]) == ([0, 1], [3, 4])
