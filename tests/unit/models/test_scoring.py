"""The one-call scorer: each padded row gets the softmax of its own last logits, from any start state."""

import pytest
import torch

from models.bundle import load_bundle
from models.completion import PrefixIndex
from models.scoring import compile_scorer

TEXTS = ["the first of the", "in", "he was born in the city of"]


def rows_of(bundle, texts: list[str]) -> list[list[int]]:
    return [[bundle.vocab.line_break_id, *bundle.vocab.encode(bundle.tokenizer.tokenize(t))] for t in texts]


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [0] * (width - len(r)) for r in rows]), torch.tensor([len(r) for r in rows])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("normalized", [False, True], ids=["log-sum-exp", "log-probabilities"])
def test_top_words_match_the_model_row_by_row(tiny_model_tag: str, dtype: torch.dtype, normalized: bool) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), dtype)
    # The test model has an adaptive softmax: its decode returns log-probabilities, and the
    # scorer may skip normalizing them; either way the answer is the model's softmax.
    assert bundle.config.log_probabilities
    scorer = compile_scorer(bundle.model, normalized)
    rows = rows_of(bundle, TEXTS)
    tokens, lengths = padded(rows)  # right-padded with <unk>
    state = bundle.model.zero_state(3)
    with torch.inference_mode():
        probs, ids, mass, line_break, _, _ = scorer.top_words(tokens, lengths, state, state[0, 0], 7, 1)
        assert probs.shape == ids.shape == (3, 7) and mass.tolist() == [1.0, 1.0, 1.0]
        for row, p, i, p_line_break in zip(rows, probs, ids, line_break, strict=True):
            logits, _ = bundle.model(torch.tensor([row]), bundle.model.zero_state(1))
            alone = logits[0, -1].float().softmax(-1)
            expected_p, expected_i = alone.topk(7)
            line_break_alone = alone[1]  # the line break's id
            if dtype == torch.bfloat16:
                # bfloat16 keeps 8 bits of mantissa, and one token a step hands the state on
                # rounded to it (one fused call keeps more inside): a few % on a probability.
                torch.testing.assert_close(p, expected_p, rtol=5e-2, atol=1e-4)
                assert i[:2].tolist() == expected_i[:2].tolist()
                continue
            torch.testing.assert_close(p, expected_p, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(p_line_break, line_break_alone, rtol=1e-5, atol=1e-7)
            assert i.tolist() == expected_i.tolist()
            assert p[0] > p[-1] > 0


def test_prefill_resumes_exactly_where_a_whole_run_ends(tiny_model_tag: str) -> None:
    """In float32, a row run in two pieces ends bit for bit where the whole run ends, state included."""
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    scorer = compile_scorer(bundle.model)
    rows = rows_of(bundle, TEXTS)
    with torch.inference_mode():
        zero = bundle.model.zero_state(3)
        whole_hidden, whole_state = scorer.prefill(*padded(rows), zero, zero[0, 0])
        split = [max(1, len(r) // 2) for r in rows]
        heads = [r[:n] for r, n in zip(rows, split, strict=True)]
        tails = [r[n:] for r, n in zip(rows, split, strict=True)]  # "in" leaves an empty tail: length 0
        mid_hidden, mid_state = scorer.prefill(*padded(heads), zero, zero[0, 0])
        tail_tokens = torch.tensor([t + [0] * (max(map(len, tails)) - len(t)) for t in tails])
        tail_lengths = torch.tensor([len(t) for t in tails])
        hidden, state = scorer.prefill(tail_tokens, tail_lengths, mid_state, mid_hidden)
    assert torch.equal(hidden, whole_hidden) and torch.equal(state, whole_state)


def test_a_span_keeps_only_its_words_renormalized_and_leaves_other_rows_bit_for_bit(tiny_model_tag: str) -> None:
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    scorer = compile_scorer(bundle.model)
    index = PrefixIndex(bundle.vocab)
    rows = rows_of(bundle, TEXTS)
    tokens, lengths = padded(rows)
    state = bundle.model.zero_state(3)
    k = len(bundle.vocab)
    low, high = index.span("th")
    assert high - low > 1
    sorted_ids = torch.tensor(index.sorted_ids)
    with torch.inference_mode():
        plain_p, plain_i, _, _, _, _ = scorer.top_words(tokens, lengths, state, state[0, 0], k, 1)
        spans = torch.tensor([1, 2]), torch.tensor([low, 0]), torch.tensor([high, 0])  # rows 1 and 2 complete
        p, i, mass, _, _, _ = scorer.top_words(tokens, lengths, state, state[0, 0], k, 1, sorted_ids, *spans)
    assert torch.equal(p[0], plain_p[0]) and torch.equal(i[0], plain_i[0]) and mass[0] == 1.0
    # Row 1 keeps the words starting with "th", in the plain order, each divided by their total.
    place = index.place_of
    expected = [(w, q) for w, q in zip(plain_i[1].tolist(), plain_p[1].tolist(), strict=True) if low <= place[w] < high]
    assert i[1, : high - low].tolist() == [w for w, _ in expected]
    assert all(bundle.vocab.words[w].startswith("th") for w in i[1, : high - low].tolist())
    assert mass[1].item() == pytest.approx(sum(q for _, q in expected), rel=1e-5)
    torch.testing.assert_close(p[1, : high - low], torch.tensor([q for _, q in expected]) / mass[1], rtol=1e-5, atol=0)
    assert p[1, : high - low].sum().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.all(p[1, high - low :] == 0)
    # An empty span keeps nothing: no probability anywhere.
    assert mass[2] == 0 and torch.all(p[2] == 0)


def test_rows_decoded_in_slices_get_the_answers_of_one_whole_batch(tiny_model_tag: str) -> None:
    """Slices of 2 rows, completions in every slice: the same words, probabilities and masses."""
    bundle = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32)
    index = PrefixIndex(bundle.vocab)
    texts = [*TEXTS, "she said that", "of", "the"]
    rows = rows_of(bundle, texts)
    tokens, lengths = padded(rows)
    state = bundle.model.zero_state(len(rows))
    low, high = index.span("th")
    a_low, a_high = index.span("a")
    # Rows 1, 2 and 5 complete a word: one in each slice of two, the last one's at its second row.
    spans = torch.tensor([1, 2, 5]), torch.tensor([low, a_low, low]), torch.tensor([high, a_high, high])
    answers = []
    for rows_per_decode in (2, 64):
        scorer = compile_scorer(bundle.model, bundle.config.log_probabilities, rows_per_decode)
        with torch.inference_mode():
            plain = scorer.top_words(tokens, lengths, state, state[0, 0], 7, 1)
            completed = scorer.top_words(
                tokens, lengths, state, state[0, 0], 7, 1, torch.tensor(index.sorted_ids), *spans
            )
        answers.append((plain, completed))
    (plain_2, completed_2), (plain_64, completed_64) = answers
    for sliced, whole in zip((*plain_2, *completed_2), (*plain_64, *completed_64), strict=True):
        torch.testing.assert_close(sliced, whole, rtol=1e-6, atol=1e-7)
    completed_ids = completed_2[1]
    assert all(bundle.vocab.words[w].startswith("th") for w in completed_ids[5].tolist() if w)
    assert all(bundle.vocab.words[w].startswith("a") for w in completed_ids[2].tolist() if w)
    assert completed_2[2][0] == 1.0 and 0 < completed_2[2][1] < 1  # only the completing rows lose mass
