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

import argparse
import contextlib
import copy
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn
from tqdm import tqdm

from models.device import DEVICE_CHOICES, pick_device
from models.rnn import ARCHITECTURES, ModelConfig, RecurrentLM, count_parameters
from models.tokenizer import LEVELS, Tokenizer, TokenizerSettings
from models.vocab import Vocabulary
from training.averaging import WeightAverage
from training.corpus import Corpus, CorpusError, load_corpus
from training.data import batchify, bptt_windows, encode_stream, line_tokens
from training.download import default_corpus
from training.evaluate import EvalResult, evaluate, format_result
from training.export import check_scripted, save_to_store, script_model
from training.fresh_texts import FreshTextResult, encode_texts, evaluate_fresh_texts, format_fresh, split_texts
from training.keystrokes import TypingResult, format_typing, simulate_typing
from training.recency_tuning import RecencyChoice, tune_recency
from training.schedule import SCHEDULES, BudgetCosine
from training.weight_drop import add_weight_drop, one_mask_per_window, remove_weight_drop
from training.word_drop import add_word_drop

VALIDATION_SAMPLE_TOKENS = 2_000
RATE_CUT = 0.25  # the learning rate's factor at each cut


@dataclass(frozen=True)
class TrainConfig:
    """Every training option; the defaults are the ``make train`` model."""

    corpus: str = "auto"  # the shared WikiText-2, else a verified download (training.download)
    model_name: str = "nextword"
    level: str = "word"  # or "char": the same model over characters
    architecture: str = "lstm"
    hidden_size: int = 300
    num_layers: int = 2
    dropout: float = 0.4
    locked_dropout: bool = False  # one mask per sequence on the inputs and outputs (models.rnn.LockedDropout)
    # DropConnect on the recurrent weights while training (training.weight_drop; docs/training.md).
    weight_drop: float = 0.5
    word_drop: float = 0.0  # share of the vocabulary dropped from the inputs a window (training.word_drop)
    tie_weights: bool = True
    # A tied adaptive softmax: its faster training buys a larger model in the same budget
    # (docs/training.md). Empty: a full softmax.
    softmax_cutoffs: tuple[int, ...] = (2000, 6000)
    min_freq: int = 1
    max_vocab: int | None = None
    lowercase: bool = False
    batch_size: int = 20
    bptt: int = 35
    optimizer: str = "sgd"
    lr: float = 20.0
    clip: float = 0.25
    epochs: int = 40
    patience: int = 3
    lr_schedule: str = "plateau"  # or "cosine": annealed to 0 by the clock (training.schedule)
    lr_patience: int = 0  # epochs without gain before the learning rate is cut (plateau)
    # From the first cut on, validate and keep the running mean of the weights (training.averaging;
    # docs/training.md).
    average_weights: bool = True
    average_at_constant_rate: bool = False  # no cut after averaging starts (AWD-LSTM's NT-ASGD)
    # With --average-weights and the plateau schedule: when an epoch ends past this share of the
    # budget with no cut yet, cut the rate there, so a slower machine still averages its last epochs.
    average_by: float = 0.6
    # The recency cache (models.recency): the last N words in the state, mixed into the next-word
    # distribution with a decay and weight chosen on the validation split after training. 0: none.
    recency_window: int = 200
    # Share of the rows whose state is reset to zero at each window's start, so that the model
    # also learns to predict from little context, as a fresh text gives it (training.fresh_texts).
    state_reset: float = 0.2
    max_minutes: float = 14.0
    seed: int = 1111
    device: str = "auto"


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


def train(config: TrainConfig, corpus: Corpus) -> TrainOutcome:
    """Fit a model on ``corpus`` and return the best epoch's weights with its scores."""
    seed_everything(config.seed)
    device = pick_device(config.device)
    tokenizer_settings = TokenizerSettings(lowercase=config.lowercase, level=config.level)
    tokenizer = Tokenizer(tokenizer_settings)
    vocab = Vocabulary.build(line_tokens(corpus.train, tokenizer), config.min_freq, config.max_vocab)
    train_stream = encode_stream(corpus.train, tokenizer, vocab)
    valid_stream = encode_stream(corpus.valid, tokenizer, vocab)
    test_stream = encode_stream(corpus.test, tokenizer, vocab)
    rows = batchify(train_stream, config.batch_size).to(device)

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
    optimizer = make_optimizer(config, model)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=RATE_CUT, patience=config.lr_patience)

    deadline = time.monotonic() + config.max_minutes * 60
    started = time.monotonic()
    cosine = BudgetCosine(optimizer, started, deadline) if config.lr_schedule == "cosine" else None
    validation_seconds = estimate_validation_seconds(model, valid_stream, device)  # kept free before the deadline
    best_valid: EvalResult | None = None
    best_weights = copy.deepcopy(model.state_dict())
    epochs_without_gain = 0
    epochs_run = 0
    average: WeightAverage | None = None
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.monotonic()
        train_loss, out_of_time = train_epoch(
            model, rows, optimizer, config, epoch, deadline - validation_seconds, cosine, average
        )
        validation_started = time.monotonic()
        with average.swapped_in(model) if average is not None else contextlib.nullcontext():
            valid = evaluate(model, valid_stream, device)
            improved = best_valid is None or valid.loss < best_valid.loss
            if improved:
                best_valid, best_weights, epochs_without_gain = valid, copy.deepcopy(model.state_dict()), 0
            else:
                epochs_without_gain += 1
        validation_seconds = time.monotonic() - validation_started
        epochs_run = epoch
        rate = optimizer.param_groups[0]["lr"]
        if cosine is None and (average is None or not config.average_at_constant_rate):
            plateau.step(valid.loss)
        print(
            f"epoch {epoch:2d} | {time.monotonic() - epoch_started:5.0f}s | train ppl {math.exp(train_loss):7.1f} | "
            f"valid ppl {valid.perplexity:7.1f} | lr {optimizer.param_groups[0]['lr']:.2e}"
            f"{' | best' if improved else ''}"
        )
        late = time.monotonic() - started >= config.average_by * config.max_minutes * 60
        no_cut_yet = optimizer.param_groups[0]["lr"] == rate and average is None
        if config.average_weights and cosine is None and late and no_cut_yet and not out_of_time:
            for group in optimizer.param_groups:
                group["lr"] *= RATE_CUT
            print(f"{config.average_by:.0%} of the budget spent: the rate is cut by {1 / RATE_CUT:g}")
        if config.average_weights and average is None and optimizer.param_groups[0]["lr"] < rate:
            average = WeightAverage(model)  # the first cut: average from here on
            print("averaging the weights from now on (validated and kept: their mean)")
        if out_of_time:
            print(f"stopping: the {config.max_minutes:g}-minute budget is spent")
            break
        if epochs_without_gain >= config.patience:
            print(f"stopping early: no gain in validation perplexity for {config.patience} epochs")
            break
    train_seconds = time.monotonic() - started

    model.load_state_dict(best_weights)
    model.eval()
    remove_weight_drop(model)
    if word_drop is not None:
        word_drop.remove()
    recency, test_without_recency = None, None
    if config.recency_window:
        test_without_recency = evaluate(model, test_stream, device)  # cache weight still 0
        valid_texts = encode_texts(split_texts(corpus.valid, tokenizer), vocab)
        recency = tune_recency(model, valid_stream, valid_texts, device)
        model_config = replace(
            model_config,
            recency_decay=recency.decay,
            recency_weight=recency.weight,
            recency_skip=recency.skip,
            recency_fill=recency.fill,
            recency_repeat=recency.repeat,
        )
        best_valid = evaluate(model, valid_stream, device)
        print(
            f"recency cache: decay {recency.decay:g}, weight {recency.weight:g}, skip {recency.skip}, "
            f"fill {recency.fill:g}, repeat {recency.repeat:g}; "
            f"validation perplexity {best_valid.perplexity:.1f} with it, "
            f"{recency.perplexity_without:.1f} without; on fresh texts {recency.fresh_perplexity:.1f} with it, "
            f"{recency.fresh_perplexity_without:.1f} without"
        )
    test = evaluate(model, test_stream, device)
    typing, fresh = None, None
    if not tokenizer.characters:  # keystrokes are counted over a word vocabulary
        typing = simulate_typing(model, test_stream, vocab, device)
        print(format_typing(typing))
        fresh = evaluate_fresh_texts(model, encode_texts(split_texts(corpus.test, tokenizer), vocab), vocab, device)
        print(format_fresh(fresh))
    assert best_valid is not None
    return TrainOutcome(
        model,
        vocab,
        tokenizer_settings,
        model_config,
        best_valid,
        test,
        typing,
        fresh,
        recency,
        test_without_recency,
        epochs_run,
        train_seconds,
        train_stream.numel(),
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
) -> tuple[float, bool]:
    """One pass over ``rows``; returns the mean loss and whether the deadline stopped it."""
    model.train()
    state = model.zero_state(rows.size(0))
    total_loss, total_tokens = 0.0, 0
    started = time.monotonic()
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
            cosine.step(time.monotonic())
        optimizer.step()
        if average is not None:
            average.update(model)
        total_loss += loss.item() * targets.numel()
        total_tokens += targets.numel()
        mean_loss = total_loss / total_tokens
        progress.set_postfix(
            loss=f"{mean_loss:.2f}",
            ppl=f"{math.exp(mean_loss):.0f}",
            tok_s=f"{total_tokens / (time.monotonic() - started):.0f}",
        )
        if time.monotonic() > deadline:
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


def estimate_validation_seconds(model: RecurrentLM, valid_stream: torch.Tensor, device: torch.device) -> float:
    """The time a validation pass will take, from timing one on a slice of the split."""
    sample = valid_stream[:VALIDATION_SAMPLE_TOKENS]
    started = time.monotonic()
    evaluate(model, sample, device)
    return (time.monotonic() - started) * valid_stream.numel() / sample.numel()


def export(config: TrainConfig, corpus: Corpus, outcome: TrainOutcome) -> str:
    """Script, verify against eager, and save to the store; returns the tag."""
    device = next(outcome.model.parameters()).device
    scripted = script_model(outcome.model)
    sample_ids = encode_stream(corpus.valid[:50], Tokenizer(outcome.tokenizer), outcome.vocab)
    check_scripted(outcome.model, scripted, batchify(sample_ids, 2)[:, :40].to(device))
    labels = {
        "level": outcome.tokenizer.level,
        "architecture": outcome.model_config.architecture,
        "layers": str(outcome.model_config.num_layers),
        "hidden_size": str(outcome.model_config.hidden_size),
        "vocab_size": str(len(outcome.vocab)),
    }
    metadata = {
        "model_config": outcome.model_config.to_dict(),
        "parameters": count_parameters(outcome.model),
        "vocab_size": len(outcome.vocab),
        "tokenizer": outcome.tokenizer.to_dict(),
        "corpus": corpus.source,
        "corpus_sha256": corpus.sha256,
        "train_tokens": outcome.train_tokens,
        "valid_tokens": outcome.valid.tokens,
        "test_tokens": outcome.test.tokens,
        "valid_perplexity": outcome.valid.perplexity,
        "test_perplexity": outcome.test.perplexity,
        "test_top1_accuracy": outcome.test.top1_accuracy,
        "test_top5_accuracy": outcome.test.top5_accuracy,
        "level": outcome.tokenizer.level,
        "epochs": outcome.epochs_run,
        "train_seconds": round(outcome.train_seconds, 1),
        "torch_version": str(torch.__version__),
        # The store rejects None in metadata; an unset option is left out.
        "train_config": {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(config).items()
            if value is not None
        },
    }
    if outcome.typing is not None:
        metadata["test_typing"] = outcome.typing.to_dict()
    if outcome.fresh is not None:
        metadata["test_fresh_texts"] = outcome.fresh.to_dict()
    if outcome.recency is not None and outcome.test_without_recency is not None:
        metadata["recency"] = outcome.recency.to_dict() | {
            "test_perplexity_without": outcome.test_without_recency.perplexity
        }
    if outcome.tokenizer.level == "char":
        metadata["test_bits_per_character"] = outcome.test.bits_per_token
    tag = save_to_store(
        config.model_name, scripted, outcome.vocab, outcome.tokenizer, outcome.model_config, labels, metadata
    )
    return str(tag)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def parse_args(argv: list[str] | None) -> TrainConfig:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--corpus", default=defaults.corpus, help="directory with train/valid/test.txt, one text file, or auto")
    add("--model-name", default=defaults.model_name, help="name in the BentoML store")
    add("--level", default=defaults.level, choices=LEVELS, help="model words or characters")
    add("--architecture", default=defaults.architecture, choices=ARCHITECTURES)
    add("--hidden-size", type=int, default=defaults.hidden_size, help="hidden units per layer (= embedding size)")
    add("--num-layers", type=int, default=defaults.num_layers)
    add("--dropout", type=float, default=defaults.dropout)
    add(
        "--locked-dropout",
        action=argparse.BooleanOptionalAction,
        default=defaults.locked_dropout,
        help="one dropout mask per sequence, kept over its time steps, on the embedded inputs and the outputs",
    )
    add(
        "--weight-drop",
        type=float,
        default=defaults.weight_drop,
        help="share of the recurrent (hidden-to-hidden) weights dropped while training (DropConnect)",
    )
    add(
        "--word-drop",
        type=float,
        default=defaults.word_drop,
        help="share of the vocabulary whose words enter as zero vectors, drawn afresh each window (embedding dropout)",
    )
    add("--no-tie-weights", dest="tie_weights", action="store_false", help="separate input and output embeddings")
    add(
        "--adaptive-softmax",
        dest="softmax_cutoffs",
        type=_cutoffs,
        default=defaults.softmax_cutoffs,
        metavar="N,M,...",
        help="adaptive softmax clusters at these word ranks, tied with an adaptive input (default 2000,6000)",
    )
    add(
        "--full-softmax",
        dest="softmax_cutoffs",
        action="store_const",
        const=(),
        help="a full (H, V) decoder instead of the adaptive softmax",
    )
    add("--min-freq", type=int, default=defaults.min_freq, help="drop train words seen fewer times")
    add("--max-vocab", type=int, default=defaults.max_vocab, help="keep at most this many words")
    add("--lowercase", action="store_true", help="lower-case all text (recorded with the model)")
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--bptt", type=int, default=defaults.bptt, help="steps of backpropagation through time")
    add("--optimizer", default=defaults.optimizer, choices=("sgd", "adam"))
    add("--lr", type=float, default=defaults.lr, help="initial learning rate (cut 4x when validation stalls)")
    add("--clip", type=float, default=defaults.clip, help="gradient norm clipping")
    add("--epochs", type=int, default=defaults.epochs, help="at most this many epochs")
    add("--patience", type=int, default=defaults.patience, help="stop after this many epochs without gain")
    add(
        "--lr-schedule",
        default=defaults.lr_schedule,
        choices=SCHEDULES,
        help="cosine: annealed to 0 over the --max-minutes budget; plateau: cut 4x when validation stalls",
    )
    add(
        "--average-weights",
        action=argparse.BooleanOptionalAction,
        default=defaults.average_weights,
        help="from the first learning-rate cut on, validate and keep the running mean of the weights (averaged SGD)",
    )
    add(
        "--average-at-constant-rate",
        action="store_true",
        help="with --average-weights: no further learning-rate cut once averaging has started",
    )
    add(
        "--average-by",
        type=float,
        default=defaults.average_by,
        help="with --average-weights: cut the rate (and start averaging) at the first epoch's end past this share "
        "of the budget, if validation has not stalled by then (1: only when it stalls)",
    )
    add(
        "--lr-patience",
        type=int,
        default=defaults.lr_patience,
        help="epochs without gain before the rate is cut (plateau)",
    )
    add(
        "--recency-window",
        type=int,
        default=defaults.recency_window,
        help="words of recent text whose repeats the model favours (a cache tuned on validation); 0: none",
    )
    add(
        "--state-reset",
        type=float,
        default=defaults.state_reset,
        help="share of the rows whose state is reset at each window's start (practice with little context)",
    )
    add("--max-minutes", type=float, default=defaults.max_minutes, help="wall-clock budget for training")
    add("--seed", type=int, default=defaults.seed)
    add("--device", default=defaults.device, choices=DEVICE_CHOICES)
    args = parser.parse_args(argv)
    for name in ("hidden_size", "num_layers", "batch_size", "bptt", "epochs", "patience", "min_freq"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("lr_patience", "recency_window"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be at least 0")
    if not 0 < args.average_by <= 1:
        parser.error("--average-by must be in (0, 1]")
    for name in ("dropout", "weight_drop", "word_drop", "state_reset"):
        if not 0 <= getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def _cutoffs(text: str) -> tuple[int, ...]:
    try:
        cutoffs = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected word ranks like 2000,6000, got {text!r}") from None
    if any(c < 1 for c in cutoffs) or list(cutoffs) != sorted(set(cutoffs)):
        raise argparse.ArgumentTypeError(f"expected increasing positive word ranks, got {text!r}")
    return cutoffs


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        corpus = load_corpus(default_corpus() if config.corpus == "auto" else config.corpus)
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
