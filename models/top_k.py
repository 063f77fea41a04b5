"""The k largest entries of each row of a (B, V) tensor, several times faster than ``torch.topk`` on the CPU.

``torch.topk`` over a vocabulary runs at about 1.5 ns an entry on one CPU
core, more than ten times what a vectorized maximum takes; over a whole
vocabulary it cost more than the decoder's matrix products
(docs/benchmarks.md). ``top_k`` asks ``torch.topk`` only
about a short list of candidates::

    blocks = the row cut into blocks of BLOCK entries    (B, V / BLOCK, BLOCK)
    the k blocks with the highest maxima                 (B, k): one cheap amax pass
    top k among those blocks' entries, and the tail      (B, k * BLOCK + V % BLOCK)

It is exact: with t the k-th highest block maximum, the k chosen blocks hold
at least k entries >= t, so every entry of the row's top k is >= t, and each
entry > t sits in a block whose maximum is > t: a chosen one. The values
returned are ``torch.topk``'s, largest first. NaN counts as the largest, as
in ``torch.topk``.

Equal entries are named by a fixed rule, the lowest column first, also at
the k-th place, where more columns may share the value than fit: ties are
common in bfloat16, and ``torch.topk`` names them in an order that depends
on how the row was cut into blocks and on the batch. A vocabulary's ids are
its frequency ranks (``models.vocab``), so among equally likely words the
more frequent comes first. Each row's answer depends on that row alone, so
an answer does not depend on its batch companions.

Usage (TorchScript or eager)::

    values, ids = top_k(logits, k)  # logits (B, V) -> (B, k) each, largest first
"""

from __future__ import annotations

import torch
from torch import Tensor

# Blocks of 32 were as fast, of 8 or 16 no faster than torch.topk; at large k and for a lone
# row torch.topk is as fast, so those go to it (docs/benchmarks.md has the figures).
BLOCK = 64


def top_k(x: Tensor, k: int, block: int = BLOCK) -> tuple[Tensor, Tensor]:
    """``torch.topk(x, k, dim=-1)`` of a 2-d ``x``: (B, k) values, largest first, and their (B, k)
    column ids, equal values lowest column first."""
    rows, width = x.size(0), x.size(1)
    blocks = width // block
    more = min(k + 1, width)  # one past the k-th, to see whether the k-th value's columns all fit
    if rows < 2 or 8 * k * block > width:  # one row, or many candidates: measured no faster
        values, ids = x.topk(more, dim=-1)
        return _fix_ties(x, k, values, ids, None, None, values[:, 0] != values[:, 0])
    whole = blocks * block
    by_block = x[:, :whole].reshape(rows, blocks, block)  # a view of a contiguous x
    chosen = min(k, blocks)
    block_maxima, best_blocks = by_block.amax(dim=-1).topk(min(chosen + 1, blocks), dim=-1)
    best_blocks = best_blocks[:, :chosen]
    candidates = by_block.gather(1, best_blocks.unsqueeze(-1).expand(rows, chosen, block)).reshape(rows, -1)
    offsets = torch.arange(block, device=x.device)
    columns = (best_blocks.unsqueeze(-1) * block + offsets).reshape(rows, chosen * block)
    if whole < width:  # the last few columns, in no whole block, are always candidates
        candidates = torch.cat([candidates, x[:, whole:]], dim=1)
        tail_ids = torch.arange(whole, width, device=x.device).expand(rows, width - whole)
        columns = torch.cat([columns, tail_ids], dim=1)
    values, where = candidates.topk(min(more, candidates.size(1)), dim=-1)
    # A column left out holds a value equal to the k-th only if its block's maximum does.
    left_out = block_maxima[:, chosen] >= values[:, k - 1] if chosen < blocks else values[:, 0] != values[:, 0]
    return _fix_ties(x, k, values, columns.gather(1, where), candidates, columns, left_out)


def _fix_ties(
    x: Tensor,
    k: int,
    values: Tensor,
    ids: Tensor,
    pool: Tensor | None,
    columns: Tensor | None,
    left_out: Tensor,
) -> tuple[Tensor, Tensor]:
    """The top k of ``values`` (B, k or k + 1, largest first) and ``ids``, equal values lowest column first.

    Where the (k+1)-th candidate equals the k-th, the k-th value's places go to the lowest
    columns of the (B, C) ``pool`` of candidates holding it; where ``left_out`` says a column
    outside the pool may hold it, to the lowest columns of the whole row (rare). Rows without
    ties pass through untouched. Without a ``pool`` (``values`` came from the whole row), a
    crossing row is fixed over the whole row.
    """
    if values.size(1) > k:
        crossing = values[:, k] == values[:, k - 1]
        values, ids = values[:, :k], ids[:, :k]
    else:
        crossing = values[:, 0] != values[:, 0]  # every column is in the top k: none
    if pool is None:
        left_out = crossing
    if not bool((values[:, 1:] == values[:, :-1]).any() | crossing.any() | left_out.any()):
        return values, ids
    values, ids = _equal_values_lowest_column_first(values, ids)
    width = x.size(1)
    for fix, whole_rows in ((crossing & ~left_out, False), (left_out, True)):
        rows = fix.nonzero().flatten()
        if rows.numel() > 0:
            if whole_rows:
                row_pool = x.index_select(0, rows)
                row_columns = torch.arange(width, device=x.device).expand(rows.size(0), width)
            else:
                assert pool is not None and columns is not None
                row_pool, row_columns = pool.index_select(0, rows), columns.index_select(0, rows)
            ids[rows] = _lowest_columns_at_the_cut(values[rows], ids[rows], row_pool, row_columns)
    return values, ids


def _equal_values_lowest_column_first(values: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(B, k) values, largest first, and their columns, with each run of equal values reordered by column."""
    places = torch.arange(values.size(1), device=values.device)
    starts_a_run = torch.ones_like(values, dtype=torch.bool)
    starts_a_run[:, 1:] = values[:, 1:] != values[:, :-1]  # NaN != NaN: each NaN its own run, as ranked
    run = torch.where(starts_a_run, places, 0).cummax(1).values  # (B, k) the place where each run starts
    order = (run * 2**32 + ids).argsort(dim=1)
    return values, ids.gather(1, order)


def _lowest_columns_at_the_cut(values: Tensor, ids: Tensor, pool: Tensor, columns: Tensor) -> Tensor:
    """(R, k) ids whose places of the k-th value go to the lowest ``columns`` of the (R, C) ``pool``
    that hold it (the pool holds every column of the row with that value)."""
    last = values[:, -1:]  # (R, 1)
    count = (values == last).sum(1, keepdim=True)  # (R, 1): the k-th value's places, at the end
    k = ids.size(1)
    untaken = torch.full_like(columns, 2**62)
    lowest = torch.where(pool == last, columns, untaken).topk(k, dim=1, largest=False).values  # (R, k) ascending
    place = torch.arange(k, device=ids.device).unsqueeze(0) - (k - count)  # (R, k): >= 0 at the last count places
    return torch.where(place >= 0, lowest.gather(1, place.clamp(min=0)), ids)
