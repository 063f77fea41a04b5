"""Every training option, declared once: the ``TrainConfig`` dataclass, from which the command line is made.

Usage::

    config = TrainConfig(hidden_size=64)              # in code (tests, notebooks)
    config = parse_args(["--hidden-size", "64"])      # from the command line (python -m training.train)

Each field's ``option()`` carries its help text and bounds; ``parse_args``
turns every field into a flag of the same name (``hidden_size`` ->
``--hidden-size``; a bool gets ``--name`` and ``--no-name``) and checks the
bounds with one message per flag. The defaults are WikiText-2's benchmark
recipe; on the command line a named corpus brings its own recipe
(``CORPUS_RECIPES``) for the flags it leaves out, so ``python -m training.train``
with no flags trains the ``make train`` model on the default corpus.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from models.device import DEVICE_CHOICES
from models.rnn import ARCHITECTURES
from models.tokenizer import LEVELS
from training.download import DEFAULT_CORPUS
from training.schedule import SCHEDULES

# A named corpus's own defaults, which flags given on the command line override. People's messages
# are read lower-cased, the case restored as the person types it (models.tokenizer.cased), and
# words seen once, mostly typos and one person's names, are left out (docs/evaluation.md measured
# both). WikiText-2 keeps the benchmark recipe, the plain defaults.
PEOPLE_RECIPE = {"lowercase": True, "min_freq": 2}
CORPUS_RECIPES: dict[str, dict[str, Any]] = {"chitchat": PEOPLE_RECIPE, "mixed": PEOPLE_RECIPE}


def corpus_recipe(corpus: str) -> dict[str, Any]:
    """The defaults a corpus name brings; ``auto`` brings those of the corpus it names."""
    return CORPUS_RECIPES.get(DEFAULT_CORPUS if corpus == "auto" else corpus, {})


def option(default: Any, help: str, *, choices: tuple = (), at_least: int | None = None, share: bool = False) -> Any:
    """A field with its command-line help; ``at_least``: a lower bound; ``share``: a number in [0, 1)."""
    return field(default=default, metadata={"help": help, "choices": choices, "at_least": at_least, "share": share})


def _cutoffs(text: str) -> tuple[int, ...]:
    try:
        cutoffs = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected word ranks like 2000,6000, got {text!r}") from None
    if any(c < 1 for c in cutoffs) or list(cutoffs) != sorted(set(cutoffs)):
        raise argparse.ArgumentTypeError(f"expected increasing positive word ranks, got {text!r}")
    return cutoffs


@dataclass(frozen=True)
class TrainConfig:
    """Every training option; the defaults are WikiText-2's benchmark recipe (docs/training.md says why)."""

    corpus: str = option(
        "auto",
        "auto (make serve's default), wikitext-2, chitchat, mixed, a directory with train/valid/test.txt, or a file",
    )
    model_name: str = option("nextword", "name in the BentoML store")
    level: str = option("word", "model words or characters", choices=LEVELS)
    architecture: str = option("lstm", "the recurrent layer", choices=ARCHITECTURES)
    hidden_size: int = option(300, "hidden units per layer (= embedding size)", at_least=1)
    num_layers: int = option(2, "recurrent layers", at_least=1)
    dropout: float = option(0.4, "dropout on the embedded inputs, between layers and on the outputs", share=True)
    locked_dropout: bool = option(
        False, "one dropout mask per sequence, kept over its time steps, on the embedded inputs and the outputs"
    )
    weight_drop: float = option(
        0.5, "share of the recurrent (hidden-to-hidden) weights dropped while training (DropConnect)", share=True
    )
    word_drop: float = option(
        0.0,
        "share of the vocabulary whose words enter as zero vectors, drawn afresh each window (embedding dropout)",
        share=True,
    )
    tie_weights: bool = option(True, "share the input embedding with the output layer")
    softmax_cutoffs: tuple[int, ...] = option(
        (2000, 6000),
        "adaptive softmax clusters at these word ranks, tied with an adaptive input (--adaptive-softmax N,M,...; "
        "--full-softmax: a full (H, V) decoder)",
    )
    min_freq: int = option(1, "drop train words seen fewer times", at_least=1)
    max_vocab: int | None = option(None, "keep at most this many words")
    lowercase: bool = option(False, "lower-case all text (recorded with the model)")
    batch_size: int = option(20, "rows trained side by side", at_least=1)
    bptt: int = option(35, "steps of backpropagation through time", at_least=1)
    optimizer: str = option("sgd", "sgd (with a large rate and clipping) or adam", choices=("sgd", "adam"))
    lr: float = option(20.0, "initial learning rate (cut 4x when validation stalls)")
    clip: float = option(0.25, "gradient norm clipping")
    epochs: int = option(40, "at most this many epochs", at_least=1)
    patience: int = option(3, "stop after this many epochs without gain", at_least=1)
    lr_schedule: str = option(
        "plateau",
        "cosine: annealed to 0 over the --max-minutes budget; plateau: cut 4x when validation stalls",
        choices=SCHEDULES,
    )
    lr_patience: int = option(0, "epochs without gain before the rate is cut (plateau)", at_least=0)
    average_weights: bool = option(
        True, "from the first learning-rate cut on, validate and keep the running mean of the weights (averaged SGD)"
    )
    average_at_constant_rate: bool = option(
        False, "with --average-weights: no further learning-rate cut once averaging has started"
    )
    average_by: float = option(
        0.6,
        "with --average-weights: cut the rate (and start averaging) at the first epoch's end past this share "
        "of the budget, if validation has not stalled by then (1: only when it stalls)",
    )
    recency_window: int = option(
        200, "words of recent text whose repeats the model favours (a cache tuned on validation); 0: none", at_least=0
    )
    state_reset: float = option(
        0.2, "share of the rows whose state is reset at each window's start (practice with little context)", share=True
    )
    max_minutes: float = option(14.0, "wall-clock budget for training and its validations")
    seed: int = option(1111, "random seed")
    device: str = option("auto", "where to train", choices=DEVICE_CHOICES)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(description: str) -> argparse.ArgumentParser:
    """A flag for every ``TrainConfig`` field, typed, with its default and help."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=description)
    for spec in fields(TrainConfig):
        meta, default = spec.metadata, spec.default
        assert default is not MISSING, spec.name
        common: dict[str, Any] = {"dest": spec.name, "default": default, "help": meta["help"]}
        if meta["choices"]:
            common["choices"] = meta["choices"]
        if isinstance(default, bool):
            parser.add_argument(flag(spec.name), action=argparse.BooleanOptionalAction, **common)
        elif spec.name == "softmax_cutoffs":
            parser.add_argument("--adaptive-softmax", type=_cutoffs, metavar="N,M,...", **common)
            parser.add_argument(
                "--full-softmax", dest=spec.name, action="store_const", const=(), help="a full (H, V) decoder instead"
            )
        else:
            kind = {"int": int, "float": float, "str": str, "int | None": int}[str(spec.type)]
            parser.add_argument(flag(spec.name), type=kind, **common)
    return parser


def parse_args(argv: list[str] | None, description: str = "Train a language model") -> TrainConfig:
    """The config the command line asks for; a value out of its bounds exits with a message naming the flag."""
    parser = build_parser(description)
    args = parser.parse_args(argv)
    if recipe := corpus_recipe(args.corpus):
        parser.set_defaults(**recipe)
        args = parser.parse_args(argv)
    for spec in fields(TrainConfig):
        value, meta = getattr(args, spec.name), spec.metadata
        if meta["at_least"] is not None and value < meta["at_least"]:
            parser.error(f"{flag(spec.name)} must be at least {meta['at_least']}")
        if meta["share"] and not 0 <= value < 1:
            parser.error(f"{flag(spec.name)} must be in [0, 1)")
    if not 0 < args.average_by <= 1:
        parser.error("--average-by must be in (0, 1]")
    return TrainConfig(**{spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)})
