"""The blocked top-k gives torch.topk's values: whatever the row holds, wherever its largest entries sit."""

import pytest
import torch

from models.top_k import top_k

scripted_top_k = torch.jit.script(top_k)  # as models.scoring runs it


def check_matches_torch(x: torch.Tensor, k: int, block: int = 64) -> None:
    """Values equal torch.topk's, largest first, and each id holds the value named beside it."""
    for run in (top_k, scripted_top_k):
        values, ids = run(x, k, block)
        expected, _ = x.topk(k, dim=-1)
        torch.testing.assert_close(values, expected, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(x.gather(1, ids), values, rtol=0, atol=0, equal_nan=True)
        assert all(len(set(row)) == k for row in ids.tolist())  # k different columns


@pytest.mark.parametrize("rows", [2, 32])
@pytest.mark.parametrize("width", [16970, 4096, 1000])  # with a tail past the last whole block, and without
@pytest.mark.parametrize("k", [1, 5, 8])
def test_distinct_values_give_torch_topk_exactly(rows: int, width: int, k: int) -> None:
    x = torch.randn(rows, width, generator=torch.Generator().manual_seed(rows * width + k))
    values, ids = top_k(x, k)
    expected_values, expected_ids = x.topk(k, dim=-1)
    assert torch.equal(values, expected_values) and torch.equal(ids, expected_ids)


def test_the_largest_entries_crowded_in_one_block_are_all_found() -> None:
    # The 8 largest of each row share one block of 64: a method that took a block's
    # maximum alone would find just one of them.
    x = torch.randn(4, 4096, generator=torch.Generator().manual_seed(0))
    x[:, 640:648] = torch.arange(100.0, 108.0)
    values, ids = top_k(x, 8)
    assert values[0].tolist() == list(range(107, 99, -1))
    assert sorted(ids[0].tolist()) == list(range(640, 648))


def test_entries_in_the_tail_past_the_last_whole_block_count() -> None:
    x = torch.randn(3, 1000, generator=torch.Generator().manual_seed(1))  # 15 blocks of 64, then 40 columns
    x[:, -1] = 50.0
    x[1, 990] = 60.0
    values, ids = top_k(x, 2)
    assert ids[1].tolist() == [990, 999] and ids[0, 0] == 999
    check_matches_torch(x, 2)


def test_ties_minus_infinity_and_nan_are_ranked_as_torch_ranks_them() -> None:
    x = torch.randn(4, 2048, generator=torch.Generator().manual_seed(2))
    x[0] = 3.0  # a row of one value: any k columns will do
    x[1, 100:2048] = float("-inf")  # most of the row impossible (a masked vocabulary)
    x[2, 777] = float("nan")  # NaN first, as torch.topk puts it
    x[3, ::100] = 9.0  # ten equal largest entries in ten blocks
    for k in (1, 3, 8):
        check_matches_torch(x, k)


def test_a_lone_row_or_a_large_k_is_left_to_torch_topk() -> None:
    x = torch.randn(1, 4096, generator=torch.Generator().manual_seed(3))
    assert torch.equal(top_k(x, 5)[1], x.topk(5, dim=-1)[1])
    wide = torch.randn(3, 300, generator=torch.Generator().manual_seed(4))  # 8 * k * 64 > 300 for every k
    check_matches_torch(wide, 3)


@pytest.mark.parametrize("rows", [1, 2, 32])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_equal_entries_are_named_lowest_column_first_also_at_the_kth_place(rows: int, k: int) -> None:
    """Values from a handful of levels tie everywhere; the answer is the rows sorted by (-value, column)."""
    generator = torch.Generator().manual_seed(rows * 10 + k)
    x = torch.randint(0, 6, (rows, 16970), generator=generator).float()
    for run in (top_k, scripted_top_k):
        values, ids = run(x, k)
        for row, row_values, row_ids in zip(x.tolist(), values.tolist(), ids.tolist(), strict=True):
            expected = sorted(range(len(row)), key=lambda column: (-row[column], column))[:k]
            assert row_ids == expected and row_values == [row[c] for c in expected]


def test_a_row_names_the_same_words_whatever_its_batch() -> None:
    x = torch.randn(32, 16970, generator=torch.Generator().manual_seed(3)).bfloat16().float()  # bfloat16 ties
    x[5, 100] = x[5, 9000] = x[5, 4000] = 9.0
    alone = top_k(x[5:6], 3)
    batched = top_k(x, 3)
    assert alone[1][0].tolist() == batched[1][5].tolist() == [100, 4000, 9000]


def test_a_column_tied_at_the_cut_in_a_block_left_out_is_found() -> None:
    """The k-th value's lower column sits in a block whose maximum ties the k-th block's: not a candidate."""
    x = torch.full((4, 4096), -5.0)
    x[:, 3000] = 9.0  # block 46 holds the largest
    x[:, 2000] = 7.0  # block 31: the k-th value, k = 2
    x[:, 100] = 7.0  # block 1: the same value, in a lower column, and a block of the same maximum
    values, ids = top_k(x, 2)
    assert ids.tolist() == [[3000, 100]] * 4 and values.tolist() == [[9.0, 7.0]] * 4
