"""The recency cache: the window it keeps in the state, the mixture it makes, and its tuning."""

from __future__ import annotations

import math

import pytest
import torch

from models.recency import RecencyCache, cache_slots
from models.rnn import ModelConfig, RecurrentLM
from models.vocab import SPECIALS, Vocabulary
from training.evaluate import evaluate
from training.export import check_scripted, script_model
from training.fresh_texts import evaluate_fresh_texts
from training.recency_tuning import tune_recency


def recency_model(window: int = 10, weight: float = 0.3, cutoffs: tuple[int, ...] = ()) -> RecurrentLM:
    torch.manual_seed(5)
    config = ModelConfig(
        vocab_size=60,
        embedding_dim=16,
        hidden_size=16,
        softmax_cutoffs=cutoffs,
        recency_window=window,
        recency_decay=0.05,
        recency_weight=weight,
    )
    return RecurrentLM(config).eval()


def test_the_window_takes_state_slots_after_the_recurrent_ones() -> None:
    model = recency_model(window=10)
    assert cache_slots(10, 2, 16) == 1  # 10 ids x 3 digits fit in one (2, 16) slot
    assert cache_slots(200, 1, 32) == 19
    assert model.zero_state(4).shape == (3, 2, 4, 16)  # h, c, the window


def test_a_known_mixture() -> None:
    """Uniform model over 5 words, window [2, 2, 4] with no decay: the cache says 2/3, 1/3."""
    cache = RecencyCache(window=4, num_layers=1, hidden_size=12, decay=0.0, weight=0.5)
    slots = cache.push(torch.zeros(1, 1, 1, 12), torch.tensor([[2, 2, 4]]))  # (C, L, B, H)
    mixed = cache.mix(torch.full((1, 5), math.log(0.2)), cache.read(slots)).exp()[0]
    expected = torch.tensor([0.1, 0.1, 0.1 + 0.5 * 2 / 3, 0.1, 0.1 + 0.5 / 3])
    torch.testing.assert_close(mixed, expected)


def test_skip_leaves_the_newest_words_out_and_fill_grows_the_share() -> None:
    """Window [2, 2, 4], the newest (4) skipped: the cache reads two places, both 2; with fill 2
    its share is 0.5 * 2 / (2 + 2)."""
    cache = RecencyCache(window=4, num_layers=1, hidden_size=12, decay=0.0, weight=0.5, skip=1, fill=2.0)
    slots = cache.push(torch.zeros(1, 1, 1, 12), torch.tensor([[2, 2, 4]]))
    mixed = cache.mix(torch.full((1, 5), math.log(0.2)), cache.read(slots)).exp()[0]
    share = 0.5 * 2 / (2 + 2)
    expected = torch.full((5,), 0.2 * (1 - share))
    expected[2] += share  # the cache's whole probability: the only word it reads
    torch.testing.assert_close(mixed, expected)


def test_a_window_of_skipped_words_only_leaves_the_model_alone() -> None:
    cache = RecencyCache(window=4, num_layers=1, hidden_size=12, decay=0.1, weight=0.5, skip=2)
    slots = cache.push(torch.zeros(1, 1, 3, 12), torch.tensor([[3, 5], [1, 1], [0, 6]]))
    log_probs = torch.randn(3, 7).log_softmax(-1)
    torch.testing.assert_close(cache.mix(log_probs, cache.read(slots)), log_probs)


def test_an_empty_window_leaves_the_model_alone() -> None:
    cache = RecencyCache(window=4, num_layers=1, hidden_size=12, decay=0.1, weight=0.5)
    log_probs = torch.randn(3, 7).log_softmax(-1)
    torch.testing.assert_close(cache.mix(log_probs, cache.read(torch.zeros(1, 1, 3, 12))), log_probs)


def test_the_window_keeps_the_last_words_and_ids_past_bfloat16s_integers() -> None:
    cache = RecencyCache(window=3, num_layers=2, hidden_size=4, decay=0.0, weight=0.5)
    ids = torch.tensor([[7, 300, 70_000, 16_000_000]])  # bfloat16 holds integers exactly only up to 256
    slots = cache.push(torch.zeros(cache.slots, 2, 1, 4, dtype=torch.bfloat16), ids)  # 9 numbers: 2 slots of 8
    digits = cache.read(slots).float()
    values = (digits * torch.tensor([1.0, 256.0, 65536.0])).sum(-1)
    assert values.tolist() == [[301.0, 70_001.0, 16_000_001.0]]  # id + 1, the oldest gone


@pytest.mark.parametrize("cutoffs", [(), (20, 40)], ids=["full softmax", "adaptive softmax"])
def test_step_by_step_equals_the_whole_sequence(cutoffs: tuple[int, ...]) -> None:
    """Serving decodes one position at a time from the state; evaluation scores a whole window at once."""
    model = recency_model(window=10, cutoffs=cutoffs)
    tokens = torch.randint(0, 60, (3, 25))
    with torch.no_grad():
        whole, whole_state = model(tokens, model.zero_state(3))
        state, steps = model.zero_state(3), []
        for t in range(tokens.size(1)):
            hidden, state = model.encode(tokens[:, t : t + 1], state)
            steps.append(model.decode(hidden[:, 0], state))
    torch.testing.assert_close(torch.stack(steps, 1), whole.log_softmax(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(state, whole_state)
    assert torch.allclose(whole.exp().sum(-1), torch.ones(3, 25), atol=1e-5)  # still a distribution


def test_a_word_just_seen_gains_probability() -> None:
    model = recency_model(window=10, weight=0.3)
    tokens = torch.tensor([[11, 23, 11]])
    with torch.no_grad():
        with_cache = model(tokens, model.zero_state(1))[0][0, -1]
        model.recency.weight = 0.0
        without = model(tokens, model.zero_state(1))[0][0, -1].log_softmax(-1)
    assert with_cache[11] > without[11] and with_cache[23] > without[23]
    assert with_cache[5] < without[5]  # a word not in the window gives up its share


def test_sampling_reads_the_model_alone() -> None:
    model = recency_model(window=10, weight=0.3)
    tokens = torch.tensor([[11, 23, 11]])
    with torch.no_grad():
        hidden, state = model.encode(tokens, model.zero_state(1))
        alone = model.decode(hidden[:, -1], state, False)
        model.recency.weight = 0.0
        torch.testing.assert_close(alone, model(tokens, model.zero_state(1))[0][:, -1].log_softmax(-1))


def test_scripted_equals_eager() -> None:
    model = recency_model(window=10, cutoffs=(20, 40))
    scripted = script_model(model)
    assert check_scripted(model, scripted, torch.randint(0, 60, (2, 15))) < 1e-5


def test_tuning_finds_a_weight_for_repetitive_text_and_evaluate_agrees() -> None:
    model = recency_model(window=10, weight=0.0)
    torch.manual_seed(6)
    stream = torch.randint(0, 6, (2000,)) * 7  # an untrained model over text of 6 repeated words
    texts = [[1, *stream[start : start + 12].tolist()] for start in range(0, 600, 12)]
    choice = tune_recency(model, stream, texts, torch.device("cpu"))
    assert choice.weight > 0 and choice.perplexity < choice.perplexity_without
    assert choice.fresh_perplexity < choice.fresh_perplexity_without
    recency = model.recency
    chosen = (recency.decay, recency.weight, recency.skip, recency.fill, recency.repeat)
    assert chosen == (choice.decay, choice.weight, choice.skip, choice.fill, choice.repeat)
    assert evaluate(model, stream, torch.device("cpu")).perplexity == pytest.approx(choice.perplexity, rel=1e-4)
    vocab = Vocabulary([*SPECIALS, *(f"w{i}" for i in range(len(SPECIALS), 60))])
    fresh = evaluate_fresh_texts(model, texts, vocab, torch.device("cpu"))
    assert fresh.perplexity == pytest.approx(choice.fresh_perplexity, rel=1e-4)


def test_tuning_reads_texts_of_every_length_as_evaluate_does() -> None:
    """Texts of 2 to 90 tokens fall into several tables of like length; the tuning's fresh
    perplexity is still that of every text read alone."""
    model = recency_model(window=10, weight=0.0)
    torch.manual_seed(8)
    stream = torch.randint(0, 6, (2000,)) * 7
    lengths = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89] * 3
    starts = torch.randint(0, 1900, (len(lengths),)).tolist()
    texts = [[1, *stream[start : start + length].tolist()] for start, length in zip(starts, lengths, strict=True)]
    choice = tune_recency(model, stream, texts, torch.device("cpu"))
    vocab = Vocabulary([*SPECIALS, *(f"w{i}" for i in range(len(SPECIALS), 60))])
    fresh = evaluate_fresh_texts(model, texts, vocab, torch.device("cpu"))
    assert fresh.perplexity == pytest.approx(choice.fresh_perplexity, rel=1e-4)


def test_tuning_skips_the_word_just_typed_when_texts_never_repeat_it() -> None:
    """Words recur within a few words but never back to back: the newest word is the one the cache must leave out."""
    model = recency_model(window=10, weight=0.0)
    torch.manual_seed(7)
    words = torch.randint(0, 6, (2000,)) * 7
    stream = torch.tensor([w for i, w in enumerate(words.tolist()) if i == 0 or w != words[i - 1]])
    texts = [[1, *stream[start : start + 12].tolist()] for start in range(0, 600, 12)]
    choice = tune_recency(model, stream, texts, torch.device("cpu"))
    assert choice.weight > 0 and choice.skip >= 1 and choice.repeat < 0.01
    assert choice.fresh_perplexity < choice.fresh_perplexity_without


def test_repeat_scales_the_word_just_typed_and_renormalizes() -> None:
    """Uniform model over 5 words, window [2, 4], no cache weight: 4 keeps a tenth of its 0.2."""
    cache = RecencyCache(window=4, num_layers=1, hidden_size=12, decay=0.0, weight=0.0, skip=1, repeat=0.1)
    slots = cache.push(torch.zeros(1, 1, 1, 12), torch.tensor([[3, 4]]))
    mixed = cache.mix(torch.full((1, 5), math.log(0.2)), cache.read(slots)).exp()[0]
    norm = 1 - 0.9 * 0.2
    torch.testing.assert_close(mixed, torch.tensor([0.2, 0.2, 0.2, 0.2, 0.02]) / norm)
    line_break = cache.push(torch.zeros(1, 1, 1, 12), torch.tensor([[3, 1]]))  # a special: left alone
    uniform = torch.full((1, 5), math.log(0.2))
    torch.testing.assert_close(cache.mix(uniform, cache.read(line_break)), uniform)
