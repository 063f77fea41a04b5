"""Read a corpus into train/valid/test lines, or fail with one clear message.

``--corpus`` is either a directory with ``train.txt``, ``valid.txt`` and
``test.txt`` (the WikiText layout) or one UTF-8 text file, split by lines into
80% train, 10% valid and 10% test of its non-empty lines, in file order, so
the split is always the same for the same file. Blank lines are text too
(they part a play's speeches): they stay where they are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "valid", "test")
MIN_TRAIN_WORDS = 1_000
MIN_EVAL_WORDS = 50
MIN_LINES_TO_SPLIT = 10


class CorpusError(Exception):
    """A corpus that cannot be trained on; the message is shown to the user as is."""


@dataclass(frozen=True)
class Corpus:
    train: list[str]
    valid: list[str]
    test: list[str]
    sha256: str  # of the raw bytes, train, valid and test in that order
    source: str
    # What one text is, for the fresh-text evaluation: a sentence, or a line (a corpus of messages
    # says so in its folder's corpus.json, as training.chitchat writes it).
    texts: str = "sentences"


def load_corpus(path: str | Path) -> Corpus:
    path = Path(path)
    if path.is_dir():
        texts = {split: _read_text(path / f"{split}.txt") for split in SPLITS}
        lines = {split: text.splitlines() for split, text in texts.items()}
    elif path.is_file():
        text = _read_text(path)
        lines = _split_lines(text.splitlines(), path)
        texts = {split: "\n".join(split_lines) for split, split_lines in lines.items()}
    else:
        raise CorpusError(f"corpus not found: {path} (give a directory with train/valid/test.txt or one text file)")

    for split in SPLITS:
        words = sum(len(line.split()) for line in lines[split])
        needed = MIN_TRAIN_WORDS if split == "train" else MIN_EVAL_WORDS
        if words < needed:
            raise CorpusError(f"corpus too small: {split} split of {path} has {words} words, need at least {needed}")

    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(texts[split].encode("utf-8"))
    record = path / "corpus.json"
    kind = json.loads(record.read_text()).get("texts", "sentences") if record.is_file() else "sentences"
    return Corpus(lines["train"], lines["valid"], lines["test"], digest.hexdigest(), str(path), kind)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(f"corpus file is empty: {path}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(f"corpus file is not UTF-8 text: {path} (byte {error.start})") from None


def _split_lines(lines: list[str], path: Path) -> dict[str, list[str]]:
    non_empty = [i for i, line in enumerate(lines) if line.strip()]  # where each non-empty line is
    if len(non_empty) < MIN_LINES_TO_SPLIT:
        raise CorpusError(
            f"corpus too small: {path} has {len(non_empty)} non-empty lines, "
            f"need at least {MIN_LINES_TO_SPLIT} to split"
        )
    # Cut before the first non-empty line of valid and of test; trailing blank lines go nowhere.
    valid_start = non_empty[int(len(non_empty) * 0.8)]
    test_start = non_empty[int(len(non_empty) * 0.8) + int(len(non_empty) * 0.1)]
    return {
        "train": lines[:valid_start],
        "valid": lines[valid_start:test_start],
        "test": lines[test_start : non_empty[-1] + 1],
    }
