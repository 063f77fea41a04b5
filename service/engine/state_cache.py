"""Exact prefix cache: token-id prefix -> the recurrent state and top-layer output after it.

A recurrent model's whole context is one fixed-size state, so a text that
extends one seen before (a person typing, a chat that grows) needs only its
new tokens run, from the state saved after the old ones. Running a sequence
in pieces gives the same numbers as running it whole, so a resumed row gets
the answer a cold run of the same batch would get (up to the last-bit
rounding that any change of batch composition brings on CPU matrix kernels).

Usage (on the model thread only; nothing here is locked)::

    cache = StateCache(capacity_bytes, state_shape=(S, L, H), dtype=..., device=...)
    cached, slot = cache.find(ids)          # a CachedPrefix: ids[:cached] is cached, its state in slot
    state, hidden = cache.load([slot, ...]) # (S, L, B, H), (B, H); slot 0 is the zero state
    cache.store([ids, ...], state, hidden)  # remember each row's state after its ids

Entries live in two preallocated slabs of slots, (N, S, L, H) and (N, H), so
loading and storing a batch is one tensor op each, and memory is bounded by
construction: ``capacity_bytes`` covers the slots plus the keys (the ids as
packed bytes) and their bookkeeping, and the least recently used entries go
first. Slab pages are touched only as slots fill, so an idle cache costs
little resident memory on CPU.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

# Bytes of Python bookkeeping per entry beyond its key's data: the bytes
# object's header, the OrderedDict's node and hash-table slot (measured with
# tracemalloc, rounded up).
ENTRY_OVERHEAD_BYTES = 128
ID_BYTES = 4  # ids packed as array('i')


@dataclass
class CacheStats:
    """Counts since the last ``take_stats()``; the service turns them into metrics."""

    hits: int = 0  # rows that resumed from a cached prefix
    misses: int = 0  # rows that ran from the start
    tokens_saved: int = 0  # tokens not run thanks to the cache


class CachedPrefix(NamedTuple):
    """What ``StateCache.find`` found for a row of ids."""

    length: int  # ids[:length] is cached; 0: nothing is
    slot: int  # where its state is, for ``load``; slot 0 is the zero state


class StateCache:
    def __init__(
        self, capacity_bytes: int, state_shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device
    ) -> None:
        slots, layers, hidden = state_shape
        self.state_shape = state_shape
        self.slot_bytes = (slots * layers * hidden + hidden) * torch.empty((), dtype=dtype).element_size()
        self.capacity_bytes = capacity_bytes
        count = 1 + capacity_bytes // (self.slot_bytes + ENTRY_OVERHEAD_BYTES)
        self.states = torch.empty(count, slots, layers, hidden, dtype=dtype, device=device)  # (N, S, L, H)
        self.hiddens = torch.empty(count, hidden, dtype=dtype, device=device)  # (N, H)
        self.states[0] = 0  # slot 0: the zero state, for rows with nothing cached
        self.hiddens[0] = 0
        self.clear()

    def clear(self) -> None:
        """Forget every entry and count afresh."""
        self.entries: OrderedDict[bytes, int] = OrderedDict()  # key -> slot, least recently used first
        self.free_slots = list(range(len(self.states) - 1, 0, -1))
        self.bytes = 0  # of the entries now held
        self.longest = 0  # most ids in any key, where a search starts
        self.stats = CacheStats()

    def find(self, ids: list[int]) -> CachedPrefix:
        """The longest cached prefix of ``ids``; (0, 0) if none."""
        key = array("i", ids).tobytes()
        for n in range(min(len(ids), self.longest), 0, -1):
            slot = self.entries.get(key[: n * ID_BYTES])
            if slot is not None:
                self.entries.move_to_end(key[: n * ID_BYTES])
                self.stats.hits += 1
                self.stats.tokens_saved += n
                return CachedPrefix(n, slot)
        self.stats.misses += 1
        return CachedPrefix(0, 0)

    def load(self, slots: list[int]) -> tuple[Tensor, Tensor]:
        """The state (S, L, B, H) and top-layer output (B, H) of each slot."""
        index = torch.tensor(slots, dtype=torch.long, device=self.states.device)
        state = self.states.index_select(0, index).permute(1, 2, 0, 3).contiguous()
        return state, self.hiddens.index_select(0, index)

    def store(self, prefixes: list[list[int]], state: Tensor, hidden: Tensor) -> None:
        """Remember row b's state ``state[:, :, b]`` and output ``hidden[b]`` as those after ``prefixes[b]``."""
        rows, slots = [], []
        for row, ids in enumerate(prefixes):
            key = array("i", ids).tobytes()
            if key in self.entries:
                self.entries.move_to_end(key)
                continue
            cost = self.slot_bytes + len(key) + ENTRY_OVERHEAD_BYTES
            if cost > self.capacity_bytes:
                continue
            while self.bytes + cost > self.capacity_bytes or not self.free_slots:
                self._evict_oldest()
            slot = self.free_slots.pop()
            self.entries[key] = slot
            self.bytes += cost
            self.longest = max(self.longest, len(ids))
            rows.append(row)
            slots.append(slot)
        if rows:
            rows, slots = last_writer_per_slot(rows, slots)
            index = torch.tensor(slots, dtype=torch.long, device=self.states.device)
            picked = torch.tensor(rows, dtype=torch.long, device=state.device)
            self.states.index_copy_(0, index, state.index_select(2, picked).permute(2, 0, 1, 3))
            self.hiddens.index_copy_(0, index, hidden.index_select(0, picked))

    def _evict_oldest(self) -> None:
        key, slot = self.entries.popitem(last=False)
        self.free_slots.append(slot)
        self.bytes -= self.slot_bytes + len(key) + ENTRY_OVERHEAD_BYTES

    def take_stats(self) -> CacheStats:
        """The counts since the last call, and start counting afresh."""
        stats, self.stats = self.stats, CacheStats()
        return stats


def last_writer_per_slot(rows: list[int], slots: list[int]) -> tuple[list[int], list[int]]:
    """Each slot once, with the last row stored in it.

    A batch with more new prefixes than the cache holds evicts some of its own
    earlier rows, and their slots are reused within the same ``store``. One
    ``index_copy_`` with a repeated index keeps the last write on the CPU, but
    its order is undefined on CUDA; only the row that owns the slot is written.
    """
    owner = dict(zip(slots, rows, strict=True))  # later rows overwrite earlier ones
    return list(owner.values()), list(owner)
