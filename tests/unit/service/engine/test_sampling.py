"""Sampling pieces on tiny tables of logits with known answers."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.sampling import SamplingBatch, choose_next, draw_uniforms, row_generator

LOGITS = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))


def params(temperature, top_k, top_p) -> SamplingBatch:
    return SamplingBatch(torch.tensor(temperature), torch.tensor(top_k), torch.tensor(top_p))


def test_temperature_zero_is_argmax() -> None:
    chosen = choose_next(LOGITS, params([0.0, 0.0], [0, 0], [1.0, 1.0]), torch.tensor([0.99, 0.99]))
    assert chosen.tolist() == [1, 0]


def test_plain_sampling_reads_the_cdf_in_vocabulary_order() -> None:
    p = params([1.0, 1.0], [0, 0], [1.0, 1.0])
    # Row 0: 0 (0.1), 1 (0.6), 2 (0.3); cumulative 0.1, 0.7, 1.0.
    assert choose_next(LOGITS, p, torch.tensor([0.05, 0.0])).tolist()[0] == 0
    assert choose_next(LOGITS, p, torch.tensor([0.5, 0.0])).tolist()[0] == 1
    assert choose_next(LOGITS, p, torch.tensor([0.95, 0.0])).tolist()[0] == 2


def test_top_k_reads_the_cdf_likeliest_first() -> None:
    p = params([1.0, 1.0], [2, 2], [1.0, 1.0])
    # Row 0's top 2, renormalised: 1 (0.67), 2 (0.33); row 1's: 0 (0.62), 2 (0.38).
    assert choose_next(LOGITS, p, torch.tensor([0.5, 0.5])).tolist() == [1, 0]
    assert choose_next(LOGITS, p, torch.tensor([0.7, 0.7])).tolist() == [2, 2]


def test_top_k_and_top_p_cut_the_tail() -> None:
    high = torch.tensor([0.95, 0.95])
    assert choose_next(LOGITS, params([1.0, 1.0], [1, 1], [1.0, 1.0]), high).tolist() == [1, 0]
    assert choose_next(LOGITS, params([1.0, 1.0], [2, 2], [1.0, 1.0]), high).tolist() == [2, 2]
    assert choose_next(LOGITS, params([1.0, 1.0], [0, 0], [0.5, 0.5]), high).tolist() == [1, 0]
    assert choose_next(LOGITS, params([1.0, 1.0], [0, 0], [0.8, 0.8]), high).tolist() == [2, 2]


def test_seeded_generators_repeat() -> None:
    first = draw_uniforms([row_generator(7), row_generator(8)], torch.device("cpu"))
    second = draw_uniforms([row_generator(7), row_generator(8)], torch.device("cpu"))
    assert torch.equal(first, second) and first[0] != first[1]


SETTINGS = [  # (temperature, top_k, top_p): every method choose_next has
    (0.0, 0, 1.0),
    (1.0, 0, 1.0),
    (0.7, 5, 1.0),
    (1.0, 5, 0.6),
    (1.3, 0, 0.8),
    (1.0, 50, 1.0),  # top_k past the vocabulary
]


def test_a_rows_choice_does_not_depend_on_its_batch() -> None:
    torch.manual_seed(0)
    logits = torch.randn(len(SETTINGS), 40) * 3
    uniforms = torch.rand(len(SETTINGS))
    batch = choose_next(logits, params(*zip(*SETTINGS, strict=True)), uniforms)
    for row, setting in enumerate(SETTINGS):
        alone = choose_next(logits[row : row + 1], params(*([v] for v in setting)), uniforms[row : row + 1])
        assert alone.item() == batch[row].item(), setting


def test_each_method_samples_its_distribution() -> None:
    """Frequencies over 40,000 draws match the probabilities each setting defines."""
    torch.manual_seed(1)
    logits = torch.randn(1, 12) * 2
    draws = 40_000
    for temperature, top_k, top_p in SETTINGS[1:]:
        probs = (logits[0] / temperature).softmax(-1)
        order = probs.argsort(descending=True)
        kept = torch.zeros_like(probs, dtype=torch.bool)
        mass = 0.0
        for rank, word in enumerate(order.tolist()):
            if (top_k and rank >= top_k) or mass >= top_p:
                break
            kept[word] = True
            mass += probs[word].item()
        expected = torch.where(kept, probs, 0.0)
        expected /= expected.sum()
        many = params([temperature] * draws, [top_k] * draws, [top_p] * draws)
        chosen = choose_next(logits.expand(draws, -1), many, torch.rand(draws))
        observed = torch.bincount(chosen, minlength=12).float() / draws
        assert (observed - expected).abs().max() < 0.01, (temperature, top_k, top_p)


def test_the_smallest_top_p_keeps_the_top_word() -> None:
    """A top_p below float32's smallest number rounds to 0: the likeliest word must still be chosen."""
    tiny = params([1.0, 1.0], [0, 3], [1e-46, 1e-46])
    for u in (0.0, 0.5, 0.999):
        assert choose_next(LOGITS, tiny, torch.tensor([u, u])).tolist() == [1, 0]


@given(
    temperature=st.one_of(
        st.sampled_from([0.0, 5e-324, 1e-45, 1e-39, 1e-6]), st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
    ),
    top_k=st.one_of(st.just(0), st.integers(min_value=0, max_value=1_000_000)),
    top_p=st.one_of(
        st.just(1.0), st.just(1e-46), st.just(5e-324), st.floats(min_value=0.0, max_value=1.0, exclude_min=True)
    ),
    uniform=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    seed=st.integers(min_value=0, max_value=2**16),
)
@settings(max_examples=300, deadline=None, derandomize=True)
def test_every_allowed_setting_chooses_an_allowed_word(temperature, top_k, top_p, uniform, seed) -> None:
    """Over the schema's whole range: never a masked word (<unk> has -inf), always among the top_k."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 50, generator=generator) * 4
    logits[:, 0] = float("-inf")  # the <unk> mask, as the service applies it
    chosen = choose_next(logits, params([temperature] * 2, [top_k] * 2, [top_p] * 2), torch.tensor([uniform] * 2))
    assert ((chosen > 0) & (chosen < 50)).all()
    if top_k:
        allowed = logits.topk(min(top_k, 50), dim=-1).indices
        assert all(c in a for c, a in zip(chosen.tolist(), allowed.tolist(), strict=True))
    if temperature < 1e-30:  # 0, or so close to it that only the top word has any probability left
        assert torch.equal(chosen, logits.argmax(dim=-1))
