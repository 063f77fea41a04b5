"""Train a word- or character-level RNN/LSTM/GRU language model and save it to the BentoML store.

Usage::

    python -m training.train --corpus ../shared/data/wikitext-2 --architecture lstm
    python -m training.train --level char --hidden-size 256 --dropout 0.1 --weight-drop 0 --no-tie-weights \
        --bptt 100 --batch-size 32 --optimizer adam --lr 2e-3 --no-average-weights   # make train-char
    python -m training.train --help

Truncated backpropagation through time over the contiguous token stream (see
training.data), gradient clipping, validation perplexity after every epoch,
the best epoch's weights kept, the learning rate cut when validation stops
improving, early stopping and a wall-clock budget, checked after every batch
with the validation that follows counted in it, so ``--max-minutes N`` means
N minutes of training and validation. The best model is then
evaluated on the test split, compiled with TorchScript and saved; the command
prints the new tag.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn
from tqdm import tqdm

from models.device import pick_device
from models.rnn import ModelConfig, RecurrentLM, count_parameters
from models.tokenizer import Tokenizer, TokenizerSettings
from models.vocab import Vocabulary
from training.averaging import WeightAverage
from training.config import TrainConfig, parse_args
from training.corpus import Corpus, CorpusError, load_corpus
from training.data import batchify, bptt_windows, encode_stream, line_tokens
from training.download import named_corpus
from training.evaluate import EvalResult, evaluate, format_result
from training.export import export
from training.fresh_texts import FreshTextResult, encode_texts, evaluate_fresh_texts, format_fresh, split_texts
from training.keystrokes import TypingResult, format_typing, simulate_typing
from training.recency_tuning import RecencyChoice, tune_recency
from training.schedule import BudgetCosine
from training.weight_drop import add_weight_drop, one_mask_per_window, remove_weight_drop
from training.word_drop import add_word_drop

VALIDATION_SAMPLE_TOKENS = 2_000
RATE_CUT = 0.25  # the learning rate's factor at each cut


@dataclass
class TrainOutcome:
    model: RecurrentLM
    vocab: Vocabulary
    tokenizer: TokenizerSettings
    model_config: ModelConfig
    valid: EvalResult
    test: EvalResult
    typing: TypingResult | None  # keystroke savings, for a word-level model
    fresh: FreshTextResult | None  # the test split's texts typed one by one from an empty state (word level)
    recency: RecencyChoice | None  # the recency cache's tuning, when the model has one
    test_without_recency: EvalResult | None  # the test split scored by the model alone
    epochs_run: int
    train_seconds: float
    train_tokens: int


def train(config: TrainConfig, corpus: Corpus, clock: Callable[[], float] = time.monotonic) -> TrainOutcome:
    """Fit a model on ``corpus`` and return the best epoch's weights with its scores.

    ``clock`` is what the budget and the cosine schedule read (seconds); tests pass their own.
    """
    # -- data: tokenize once, the vocabulary from the train split -------------------------------
    seed_everything(config.seed)
    device = pick_device(config.device)
    tokenizer_settings = TokenizerSettings(lowercase=config.lowercase, level=config.level)
    tokenizer = Tokenizer(tokenizer_settings)
    vocab = Vocabulary.build(line_tokens(corpus.train, tokenizer), config.min_freq, config.max_vocab)
    train_stream = encode_stream(corpus.train, tokenizer, vocab)
    valid_stream = encode_stream(corpus.valid, tokenizer, vocab)
    test_stream = encode_stream(corpus.test, tokenizer, vocab)
    rows = batchify(train_stream, config.batch_size).to(device)  # (batch_size, tokens per row)

    # -- model and its training-only regularizers --------------------------------------------------
    model_config = ModelConfig(
        architecture=config.architecture,
        vocab_size=len(vocab),
        embedding_dim=config.hidden_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        locked_dropout=config.locked_dropout,
        tie_weights=config.tie_weights,
        softmax_cutoffs=config.softmax_cutoffs,
        recency_window=config.recency_window,
    )
    model = RecurrentLM(model_config).to(device)
    add_weight_drop(model, config.weight_drop)
    word_drop = add_word_drop(model, config.word_drop, len(vocab))
    print(
        f"{config.architecture} {config.num_layers}x{config.hidden_size}, vocabulary {len(vocab):,}, "
        f"{count_parameters(model):,} parameters, {train_stream.numel():,} training tokens on {device}"
    )

    # -- optimizer, learning-rate schedule and the budget ------------------------------------------
    optimizer = make_optimizer(config, model)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=RATE_CUT, patience=config.lr_patience)
    started = clock()
    deadline = started + config.max_minutes * 60
    cosine = BudgetCosine(optimizer, started, deadline) if config.lr_schedule == "cosine" else None
    validation_seconds = estimate_validation_seconds(
        model, valid_stream, device, clock
    )  # kept free before the deadline
    best_valid: EvalResult | None = None
    best_weights = copy.deepcopy(model.state_dict())
    epochs_without_gain = 0
    epochs_run = 0
    average: WeightAverage | None = None

    for epoch in range(1, config.epochs + 1):
        # -- one pass over the training rows, stopped by the budget ---------------------------------
        epoch_started = clock()
        train_loss, out_of_time = train_epoch(
            model, rows, optimizer, config, epoch, deadline - validation_seconds, cosine, average, clock
        )
        epochs_run = epoch

        # -- validate (the running mean, once averaging), keep the best -----------------------------
        validation_started = clock()
        with average.swapped_in(model) if average is not None else contextlib.nullcontext():
            valid = evaluate(model, valid_stream, device)
            improved = best_valid is None or valid.loss < best_valid.loss
            if improved:
                best_valid, best_weights, epochs_without_gain = valid, copy.deepcopy(model.state_dict()), 0
            else:
                epochs_without_gain += 1
        validation_seconds = clock() - validation_started

        # -- the learning rate: cut on a plateau, or by the budget; averaging from the first cut ---
        rate = current_rate(optimizer)
        if cosine is None and (average is None or not config.average_at_constant_rate):
            plateau.step(valid.loss)
        print(
            f"epoch {epoch:2d} | {clock() - epoch_started:5.0f}s | train ppl {math.exp(train_loss):7.1f} | "
            f"valid ppl {valid.perplexity:7.1f} | lr {current_rate(optimizer):.2e}"
            f"{' | best' if improved else ''}"
        )
        if not out_of_time and budget_calls_for_a_cut(config, optimizer, rate, average, clock() - started):
            cut_rate(optimizer)
            print(f"{config.average_by:.0%} of the budget spent: the rate is cut by {1 / RATE_CUT:g}")
        if averaging_starts(config, optimizer, rate, average):
            average = WeightAverage(model)
            print("averaging the weights from now on (validated and kept: their mean)")

        # -- termination: the budget, or no gain for `patience` epochs ------------------------------
        if out_of_time:
            print(f"stopping: the {config.max_minutes:g}-minute budget is spent")
            break
        if out_of_patience(config, epochs_without_gain):
            print(f"stopping early: no gain in validation perplexity for {config.patience} epochs")
            break
    train_seconds = clock() - started

    # -- the best weights, as served: regularizers removed, the recency cache tuned --------------
    model.load_state_dict(best_weights)
    model.eval()
    remove_weight_drop(model)
    if word_drop is not None:
        word_drop.remove()
    recency, test_without_recency = None, None
    if config.recency_window:
        test_without_recency = evaluate(model, test_stream, device)  # cache weight still 0
        recency, model_config = tune_recency_cache(model, model_config, corpus, tokenizer, vocab, valid_stream, device)
        best_valid = evaluate(model, valid_stream, device)
        print(format_recency(recency, best_valid))

    # -- test: perplexity, keystrokes on the stream and on fresh texts ----------------------------
    test = evaluate(model, test_stream, device)
    typing, fresh = None, None
    if not tokenizer.characters:  # keystrokes are counted over a word vocabulary
        typing = simulate_typing(model, test_stream, vocab, device)
        print(format_typing(typing))
        test_texts = encode_texts(split_texts(corpus.test, tokenizer, corpus.texts), vocab)
        fresh = evaluate_fresh_texts(model, test_texts, vocab, device)
        print(format_fresh(fresh))
    assert best_valid is not None
    return TrainOutcome(
        model=model,
        vocab=vocab,
        tokenizer=tokenizer_settings,
        model_config=model_config,
        valid=best_valid,
        test=test,
        typing=typing,
        fresh=fresh,
        recency=recency,
        test_without_recency=test_without_recency,
        epochs_run=epochs_run,
        train_seconds=train_seconds,
        train_tokens=train_stream.numel(),
    )


def current_rate(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def cut_rate(optimizer: torch.optim.Optimizer) -> None:
    """The rate cut: every group's learning rate times ``RATE_CUT``."""
    for group in optimizer.param_groups:
        group["lr"] *= RATE_CUT


def budget_calls_for_a_cut(
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    rate_before: float,
    average: WeightAverage | None,
    spent_s: float,
) -> bool:
    """Averaging by the budget: past ``average_by`` of it with no cut yet, cut now, so that a machine
    too slow to see validation stall still averages its last epochs (plateau schedule only)."""
    late = spent_s >= config.average_by * config.max_minutes * 60
    no_cut_yet = current_rate(optimizer) == rate_before and average is None
    return config.average_weights and config.lr_schedule == "plateau" and late and no_cut_yet


def averaging_starts(
    config: TrainConfig, optimizer: torch.optim.Optimizer, rate_before: float, average: WeightAverage | None
) -> bool:
    """Weight averaging (AWD-LSTM's averaged SGD) starts at the first cut of the learning rate."""
    return config.average_weights and average is None and current_rate(optimizer) < rate_before


def out_of_patience(config: TrainConfig, epochs_without_gain: int) -> bool:
    """Early stopping: ``patience`` epochs in a row without a better validation loss."""
    return epochs_without_gain >= config.patience


def tune_recency_cache(
    model: RecurrentLM,
    model_config: ModelConfig,
    corpus: Corpus,
    tokenizer: Tokenizer,
    vocab: Vocabulary,
    valid_stream: torch.Tensor,
    device: torch.device,
) -> tuple[RecencyChoice, ModelConfig]:
    """Choose the recency cache's terms on the validation split, as a stream and as fresh texts."""
    valid_texts = encode_texts(split_texts(corpus.valid, tokenizer, corpus.texts), vocab)
    recency = tune_recency(model, valid_stream, valid_texts, device)
    tuned = replace(
        model_config,
        recency_decay=recency.decay,
        recency_weight=recency.weight,
        recency_skip=recency.skip,
        recency_fill=recency.fill,
        recency_repeat=recency.repeat,
    )
    return recency, tuned


def format_recency(recency: RecencyChoice, valid: EvalResult) -> str:
    return (
        f"recency cache: decay {recency.decay:g}, weight {recency.weight:g}, skip {recency.skip}, "
        f"fill {recency.fill:g}, repeat {recency.repeat:g}; "
        f"validation perplexity {valid.perplexity:.1f} with it, "
        f"{recency.perplexity_without:.1f} without; on fresh texts {recency.fresh_perplexity:.1f} with it, "
        f"{recency.fresh_perplexity_without:.1f} without"
    )


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Plain SGD with a large rate and clipping converges best for these LSTMs (Zaremba et al. 2014);
    Adam is offered for quick experiments."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    return torch.optim.SGD(model.parameters(), lr=config.lr)


def train_epoch(
    model: RecurrentLM,
    rows: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    deadline: float,
    cosine: BudgetCosine | None = None,
    average: WeightAverage | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[float, bool]:
    """One pass over ``rows``; returns the mean loss and whether the deadline stopped it."""
    model.train()
    state = model.zero_state(rows.size(0))
    total_loss, total_tokens = 0.0, 0
    started = clock()
    windows = math.ceil((rows.size(1) - 1) / config.bptt)
    progress = tqdm(bptt_windows(rows, config.bptt), total=windows, desc=f"epoch {epoch}", leave=False, disable=None)
    for batch, (inputs, targets) in enumerate(progress, start=1):
        state = state.detach()  # truncate backpropagation at the window edge
        if config.state_reset:
            state = reset_some_rows(state, config.state_reset)
        with one_mask_per_window():
            loss, state = model.loss(inputs, targets, state)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        if cosine is not None:
            cosine.step(clock())
        optimizer.step()
        if average is not None:
            average.update(model)
        total_loss += loss.item() * targets.numel()
        total_tokens += targets.numel()
        mean_loss = total_loss / total_tokens
        progress.set_postfix(
            loss=f"{mean_loss:.2f}",
            ppl=f"{math.exp(mean_loss):.0f}",
            tok_s=f"{total_tokens / (clock() - started):.0f}",
        )
        if clock() > deadline:
            progress.close()
            print(f"the budget stopped epoch {epoch} after {batch:,} of {windows:,} batches")
            return total_loss / total_tokens, True
    progress.close()
    return total_loss / total_tokens, False


def reset_some_rows(state: torch.Tensor, share: float) -> torch.Tensor:
    """The (S, L, B, H) state with about ``share`` of its B rows set to zero, the recency window too:
    those rows read the window that follows as a text that starts there."""
    keep = torch.rand(1, 1, state.size(2), 1, device=state.device) >= share
    return state * keep


def estimate_validation_seconds(
    model: RecurrentLM, valid_stream: torch.Tensor, device: torch.device, clock: Callable[[], float] = time.monotonic
) -> float:
    """The time a validation pass will take, from timing one on a slice of the split."""
    sample = valid_stream[:VALIDATION_SAMPLE_TOKENS]
    started = clock()
    evaluate(model, sample, device)
    return (clock() - started) * valid_stream.numel() / sample.numel()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv, __doc__.split("\n")[0])
    try:
        corpus = load_corpus(named_corpus(config.corpus))
        pick_device(config.device)
    except (CorpusError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    outcome = train(config, corpus)
    print(format_result("best model", outcome.test, outcome.tokenizer.level == "char"))
    tag = export(config, corpus, outcome)
    print(f"saved {tag} ({outcome.train_seconds / 60:.1f} min of training)")
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
