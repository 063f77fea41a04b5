import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench.launcher import REPO
from training.corpus import CorpusError, load_corpus


def test_directory_layout(corpus_dir: Path) -> None:
    corpus = load_corpus(corpus_dir)
    assert len(corpus.train) > len(corpus.valid) > 0 and len(corpus.test) > 0
    # The checksum is of the files' bytes, train, valid and test in that order, as sha256sum would see them joined.
    joined = b"".join((corpus_dir / f"{split}.txt").read_bytes() for split in ("train", "valid", "test"))
    assert corpus.sha256 == hashlib.sha256(joined).hexdigest()


def test_single_file_split_is_deterministic(tiny_corpus_file: Path) -> None:
    first, second = load_corpus(tiny_corpus_file), load_corpus(tiny_corpus_file)
    assert first == second
    assert len(first.train) > 6 * len(first.valid) > 0


def bad_corpora(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "empty.txt").write_text("  \n\n")
    (tmp / "binary.txt").write_bytes(b"\xff\xfe\x00bad" * 100)
    (tmp / "small.txt").write_text("a few words\n" * 20)
    (tmp / "partial").mkdir()
    (tmp / "partial" / "train.txt").write_text("words " * 2000)
    return {
        "missing": (tmp / "nope", "not found"),
        "empty": (tmp / "empty.txt", "empty"),
        "undecodable": (tmp / "binary.txt", "not UTF-8"),
        "too small": (tmp / "small.txt", "too small"),
        "missing split": (tmp / "partial", "valid.txt"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "undecodable", "too small", "missing split"])
def test_bad_corpus_is_a_clear_error(case: str, tmp_path: Path) -> None:
    path, message = bad_corpora(tmp_path)[case]
    with pytest.raises(CorpusError, match=message):
        load_corpus(path)


@pytest.mark.parametrize("case", ["missing", "undecodable", "too small"])
def test_train_cli_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    path, message = bad_corpora(tmp_path)[case]
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--corpus", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
