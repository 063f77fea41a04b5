"""One TrainConfig makes the command line: every field a flag, its defaults, its bounds."""

from __future__ import annotations

from dataclasses import fields

import pytest

from training.config import TrainConfig, build_parser, parse_args


def test_cli_options_map_to_config() -> None:
    config = parse_args(["--architecture", "gru", "--hidden-size", "64", "--no-tie-weights", "--min-freq", "2"])
    assert (config.architecture, config.hidden_size, config.tie_weights, config.min_freq) == ("gru", 64, False, 2)
    assert parse_args(["--locked-dropout"]).locked_dropout and not parse_args([]).locked_dropout
    with pytest.raises(SystemExit):
        parse_args(["--dropout", "1.5"])


def test_every_config_field_is_a_flag_with_its_default() -> None:
    parser = build_parser("")
    flags = {option for action in parser._actions for option in action.option_strings}
    for spec in fields(TrainConfig):
        if spec.name == "softmax_cutoffs":
            assert {"--adaptive-softmax", "--full-softmax"} <= flags
            continue
        assert "--" + spec.name.replace("_", "-") in flags, spec.name
    # The command line's defaults are the dataclass's, the WikiText-2 recipe, where no corpus recipe applies.
    assert parse_args(["--corpus", "wikitext-2"]) == TrainConfig(corpus="wikitext-2")
    assert parse_args(["--full-softmax"]).softmax_cutoffs == ()
    assert parse_args(["--adaptive-softmax", "100,200"]).softmax_cutoffs == (100, 200)
    assert parse_args(["--max-vocab", "50"]).max_vocab == 50
    assert not parse_args(["--no-tie-weights"]).tie_weights and parse_args(["--lowercase"]).lowercase
    for bad in (["--hidden-size", "0"], ["--state-reset", "1"], ["--adaptive-softmax", "200,100"], ["--level", "x"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_a_named_corpus_brings_its_recipe_and_flags_override_it() -> None:
    default = parse_args([])
    assert default.corpus == "auto" and (default.lowercase, default.min_freq) == (True, 2)  # the mixed default
    chat = parse_args(["--corpus", "chitchat"])
    assert (chat.lowercase, chat.min_freq) == (True, 2)
    wiki = parse_args(["--corpus", "wikitext-2"])
    assert (wiki.lowercase, wiki.min_freq) == (TrainConfig.lowercase, TrainConfig.min_freq) == (False, 1)
    chosen = parse_args(["--corpus", "mixed", "--no-lowercase", "--min-freq", "3"])
    assert (chosen.lowercase, chosen.min_freq) == (False, 3)
