"""Token streams and truncated-BPTT batches.

The corpus becomes one contiguous stream of ids (``<eos>``, the line break,
after every line, and ``<eot>`` after a split's last line: each corpus file, or
each split of one, is one text),
cut into ``batch_size`` rows that are read left to right in windows of
``bptt`` steps; the recurrent state of row b carries over from one window to
the next because the next window continues the same text::

    stream:  a b c d e f g h i j k l m n o p q r s t u v w x   (batch_size=4)

    rows:    a b c d e f        windows (bptt=3):  [a b c] [d e f]
             g h i j k l                           [g h i] [j k l]
             m n o p q r                           [m n o] [p q r]
             s t u v w x                           [s t u] [v w x]

    targets are the inputs shifted one step left in the same row.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from models.tokenizer import END_OF_TEXT, LINE_BREAK, Tokenizer
from models.vocab import Vocabulary

# Evaluation reads a split as EVAL_BATCH_SIZE rows in windows of EVAL_BPTT, the state
# carried across windows; every measure of a split (perplexity, keystrokes) reads it so.
EVAL_BATCH_SIZE = 10
EVAL_BPTT = 35


_WORDS = Tokenizer()


def line_tokens(lines: list[str], tokenizer: Tokenizer) -> Iterator[str]:
    """Tokens of every line, each line closed by ``<eos>``, the text closed by ``<eot>``.

    A character-level tokenizer reads each line as people type it: the word
    tokenizer's round trip turns corpus forms (``don 't``, ``1 @,@ 000``) into
    ``don't`` and ``1,000`` and leaves ordinary text as it is.
    """
    for line in lines:
        if tokenizer.characters:
            line = _WORDS.detokenize(_WORDS.tokenize(line))
        yield from tokenizer.tokenize(line)
        yield LINE_BREAK
    yield END_OF_TEXT


def encode_stream(lines: list[str], tokenizer: Tokenizer, vocab: Vocabulary) -> Tensor:
    """All lines as one 1-D int64 tensor of ids."""
    return torch.tensor(vocab.encode(line_tokens(lines, tokenizer)), dtype=torch.long)


def batchify(stream: Tensor, batch_size: int) -> Tensor:
    """(N,) -> (batch_size, N // batch_size), dropping the tail that does not fit."""
    columns = stream.numel() // batch_size
    if columns < 2:
        raise ValueError(f"stream of {stream.numel()} tokens is too short for batch size {batch_size}")
    return stream[: columns * batch_size].view(batch_size, columns)


def bptt_windows(rows: Tensor, bptt: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (inputs, targets), each (B, <=bptt), walking the rows left to right."""
    for start in range(0, rows.size(1) - 1, bptt):
        length = min(bptt, rows.size(1) - 1 - start)
        yield rows[:, start : start + length], rows[:, start + 1 : start + 1 + length]
