"""Training runs end to end on a small slice: seeded, budgeted, early-stopping."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_TRAIN
from training.config import parse_args
from training.corpus import load_corpus
from training.export import check_scripted, script_model
from training.train import train

SMALL = replace(TINY_TRAIN, hidden_size=16, max_vocab=500, recency_window=0)  # training alone


class TickingClock:
    """A clock for the budget that moves ``tick`` seconds each time it is read, whatever this machine's speed."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture(scope="module")
def corpus(tiny_corpus_file: Path):
    return load_corpus(tiny_corpus_file)


def test_same_seed_same_model(corpus) -> None:
    first, second = train(SMALL, corpus), train(SMALL, corpus)
    assert first.valid.loss == second.valid.loss
    other = train(replace(SMALL, seed=7), corpus)
    assert other.valid.loss != first.valid.loss


def test_budget_stops_training(corpus, capsys) -> None:
    outcome = train(replace(SMALL, epochs=5, max_minutes=1 / 60), corpus, clock=TickingClock(1.0))
    assert outcome.epochs_run == 1 and "budget is spent" in capsys.readouterr().out


@pytest.mark.slow  # several epochs of a model that overfits: seconds each
def test_early_stopping_keeps_the_best_epoch(corpus, capsys) -> None:
    # Without dropout this model overfits the slice within a few epochs.
    outcome = train(replace(SMALL, epochs=15, patience=1, hidden_size=64, max_vocab=2000), corpus)
    out = capsys.readouterr().out
    assert "stopping early" in out and outcome.epochs_run < 15
    best_lines = [line for line in out.splitlines() if line.startswith("epoch") and line.endswith("| best")]
    assert not out.splitlines()[-2].endswith("| best")  # the last epoch was worse ...
    best_ppl = float(best_lines[-1].split("valid ppl")[1].split("|")[0])
    assert outcome.valid.perplexity == pytest.approx(best_ppl, rel=1e-3)  # ... and the best one was kept


def test_the_recency_cache_leaves_training_alone_and_is_tuned_after_it(corpus) -> None:
    """The window rides in the state, but no loss reads it: the same weights as without it."""
    with_cache, without = train(replace(SMALL, recency_window=200), corpus), train(SMALL, corpus)
    trained = with_cache.model.state_dict()
    assert all(torch.equal(weight, trained[name]) for name, weight in without.model.state_dict().items())
    assert without.recency is None and with_cache.recency is not None
    assert with_cache.test_without_recency.perplexity == pytest.approx(without.test.perplexity, rel=1e-5)
    # Chosen on the validation split, it also lowers the held-out test perplexity, and the store records it.
    assert with_cache.recency.weight > 0 and with_cache.test.perplexity < without.test.perplexity
    config = with_cache.model_config
    assert (config.recency_decay, config.recency_weight) == (with_cache.recency.decay, with_cache.recency.weight)
    assert parse_args(["--recency-window", "0"]).recency_window == 0
    with pytest.raises(SystemExit):
        parse_args(["--recency-window", "-1"])


def test_the_budget_stops_inside_an_epoch(corpus, capsys) -> None:
    # About 3 clock reads a batch at 1 s each: a 2-minute budget ends some 40 batches into the first epoch.
    outcome = train(replace(SMALL, epochs=5, max_minutes=2), corpus, clock=TickingClock(1.0))
    out = capsys.readouterr().out
    assert outcome.epochs_run == 1 and "the budget stopped epoch 1 after" in out
    done, total = re.search(r"stopped epoch 1 after ([\d,]+) of ([\d,]+) batches", out).groups()
    assert int(done.replace(",", "")) < int(total.replace(",", ""))


def test_weight_drop_trains_differently_and_exports_a_plain_model(corpus) -> None:
    plain = train(SMALL, corpus)
    dropped = train(replace(SMALL, weight_drop=0.5), corpus)
    assert dropped.valid.loss != plain.valid.loss  # the masks changed training
    # Removed after training: the same state-dict keys as a model trained without it, and it scripts.
    assert set(dropped.model.state_dict()) == set(plain.model.state_dict())
    scripted = script_model(dropped.model)
    tokens = torch.randint(0, dropped.model_config.vocab_size, (2, 7))
    assert check_scripted(dropped.model, scripted, tokens) < 1e-5


def test_cosine_schedule_anneals_within_the_budget(corpus, capsys) -> None:
    # 0.01 s a clock read: an epoch is a few seconds of the clock, so the 20-second budget holds a few.
    train(
        replace(SMALL, lr_schedule="cosine", epochs=200, patience=200, max_minutes=20 / 60),
        corpus,
        clock=TickingClock(0.01),
    )
    rates = [float(rate) for rate in re.findall(r"\| lr ([\d.e+-]+)", capsys.readouterr().out)]
    assert len(rates) >= 2 and rates == sorted(rates, reverse=True)  # falling epoch by epoch ...
    assert rates[-1] < 0.2 * SMALL.lr  # ... to near zero when the budget runs out
    assert parse_args(["--lr-schedule", "cosine"]).lr_schedule == "cosine"


def test_word_drop_trains_differently_and_leaves_a_plain_model(corpus) -> None:
    plain = train(SMALL, corpus)
    dropped = train(replace(SMALL, word_drop=0.2), corpus)
    assert dropped.valid.loss != plain.valid.loss
    assert not dropped.model.embedding._forward_hooks  # removed before export
    assert parse_args(["--word-drop", "0.1"]).word_drop == 0.1
    with pytest.raises(SystemExit):
        parse_args(["--word-drop", "-0.1"])


@pytest.mark.slow  # several epochs of a model that overfits: seconds each
@pytest.mark.parametrize("constant_rate", [False, True])
def test_averaging_starts_at_the_first_cut_and_keeps_the_mean(corpus, capsys, constant_rate: bool) -> None:
    config = replace(
        SMALL,
        epochs=8,
        patience=3,
        hidden_size=64,
        max_vocab=2000,
        average_weights=True,
        average_at_constant_rate=constant_rate,
    )
    outcome = train(config, corpus)  # without dropout this model overfits: the rate is cut within a few epochs
    lines = capsys.readouterr().out.splitlines()
    started = next(i for i, line in enumerate(lines) if line.startswith("averaging the weights"))
    epochs_before = sum(line.startswith("epoch") for line in lines[:started])
    rates = [float(line.split("| lr ")[1].split()[0]) for line in lines if line.startswith("epoch")]
    assert rates[epochs_before - 1] < rates[0]  # it starts right after the epoch whose rate was cut
    assert len(rates) > epochs_before  # and at least one epoch ran with it
    if constant_rate:  # no cut after that
        assert set(rates[epochs_before - 1 :]) == {rates[epochs_before - 1]}
    best = min(float(line.split("valid ppl")[1].split("|")[0]) for line in lines if line.startswith("epoch"))
    assert outcome.valid.perplexity == pytest.approx(best, rel=1e-3)
    assert parse_args([]).average_weights and not parse_args(["--no-average-weights"]).average_weights


def test_averaging_starts_by_its_share_of_the_budget(corpus, capsys) -> None:
    """A machine too slow to see validation stall within the budget still averages its last epochs."""
    train(replace(SMALL, epochs=3, patience=3, average_weights=True, average_by=1e-6), corpus)
    lines = capsys.readouterr().out.splitlines()
    cut = next(i for i, line in enumerate(lines) if "of the budget spent: the rate is cut by 4" in line)
    assert lines[cut - 1].startswith("epoch  1") and lines[cut + 1].startswith("averaging the weights")
    rates = [float(line.split("| lr ")[1].split()[0]) for line in lines if line.startswith("epoch")]
    assert len(rates) == 3 and rates[1] <= rates[0] / 4
    with pytest.raises(SystemExit):
        parse_args(["--average-by", "0"])
