"""Sampling pieces on tiny tables of logits with known answers."""

import torch

from service.sampling import SamplingBatch, choose_next, draw_uniforms, row_generator

LOGITS = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))


def params(temperature, top_k, top_p) -> SamplingBatch:
    return SamplingBatch(torch.tensor(temperature), torch.tensor(top_k), torch.tensor(top_p))


def test_temperature_zero_is_argmax() -> None:
    chosen = choose_next(LOGITS, params([0.0, 0.0], [0, 0], [1.0, 1.0]), torch.tensor([0.99, 0.99]))
    assert chosen.tolist() == [1, 0]


def test_inverse_cdf_over_sorted_probabilities() -> None:
    p = params([1.0, 1.0], [0, 0], [1.0, 1.0])
    # Row 0 sorted: 1 (0.6), 2 (0.3), 0 (0.1).
    assert choose_next(LOGITS, p, torch.tensor([0.5, 0.0])).tolist()[0] == 1
    assert choose_next(LOGITS, p, torch.tensor([0.7, 0.0])).tolist()[0] == 2
    assert choose_next(LOGITS, p, torch.tensor([0.95, 0.0])).tolist()[0] == 0


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
