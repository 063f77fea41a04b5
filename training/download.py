"""The default corpus: the shared WikiText-2 folder, or a verified download.

Usage::

    python -m training.download      # prints the corpus directory to use

Where ``../shared/data/wikitext-2`` (beside this repository) exists it is the
default. Elsewhere WikiText-2 is downloaded once from its public source, its
SHA-256 checked, and unpacked into a cache outside the repository
(``$NEXTWORD_CACHE``, default ``~/.cache/nextword``) as train/valid/test.txt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import httpx

from training.chitchat import VERSION as CHITCHAT_VERSION
from training.chitchat import materialize
from training.corpus import SPLITS, CorpusError

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2"
WIKITEXT2_URLS = (
    "https://wikitext.smerity.com/wikitext-2-v1.zip",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
)
WIKITEXT2_SHA256 = "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c"
# Archive member for each of our split names.
WIKITEXT2_MEMBERS = {split: f"wikitext-2/wiki.{split}.tokens" for split in SPLITS}
OFFLINE_HINT = "point CORPUS= (make) or --corpus at a directory with train/valid/test.txt or one text file"


def cache_dir() -> Path:
    return Path(os.environ.get("NEXTWORD_CACHE", Path.home() / ".cache" / "nextword"))


def wikitext2_corpus() -> Path:
    """The shared corpus where present, else the cached (or freshly downloaded) WikiText-2."""
    if all((SHARED_CORPUS / f"{split}.txt").is_file() for split in SPLITS):
        return SHARED_CORPUS
    return ensure_wikitext2(cache_dir() / "wikitext-2")


def ensure_wikitext2(target: Path, urls: tuple[str, ...] = WIKITEXT2_URLS, sha256: str = WIKITEXT2_SHA256) -> Path:
    """Download, verify and unpack WikiText-2 into ``target`` unless it is already there."""
    if all((target / f"{split}.txt").is_file() for split in SPLITS):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        archive = Path(scratch) / "wikitext-2.zip"
        for url in urls:
            try:
                digest = _download(url, archive)
            except httpx.HTTPError as error:
                failures.append(f"{url}: {error}")
                continue
            if digest != sha256:
                raise CorpusError(f"checksum mismatch for {url}: got sha256 {digest}, expected {sha256}")
            unpacked = Path(scratch) / "unpacked"
            _unpack(archive, unpacked)
            shutil.rmtree(target, ignore_errors=True)
            unpacked.rename(target)  # whole folder at once: no half-written cache
            return target
    raise CorpusError(f"could not download WikiText-2 ({'; '.join(failures)}); {OFFLINE_HINT}")


def _download(url: str, path: Path) -> str:
    print(f"downloading {url}", file=sys.stderr)
    digest = hashlib.sha256()
    with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response, path.open("wb") as file:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            digest.update(chunk)
            file.write(chunk)
    return digest.hexdigest()


def _unpack(archive: Path, folder: Path) -> None:
    folder.mkdir()
    with zipfile.ZipFile(archive) as zipped:
        for split, member in WIKITEXT2_MEMBERS.items():
            try:
                (folder / f"{split}.txt").write_bytes(zipped.read(member))
            except KeyError:
                raise CorpusError(f"archive has no {member}") from None


CORPUS_NAMES = ("auto", "wikitext-2", "chitchat", "mixed")
# What ``auto`` (make serve's and make train's corpus) names: the one that serves people typing
# everyday text best without falling apart on encyclopedic text (docs/evaluation.md's rule).
DEFAULT_CORPUS = "mixed"


def named_corpus(name: str) -> Path:
    """The folder of a corpus given by name (``CORPUS_NAMES``), or ``name`` itself as a path.

    ``auto`` is make serve's default, ``DEFAULT_CORPUS``; ``wikitext-2`` the benchmark corpus, the
    shared copy or a checked download (``wikitext2_corpus``); ``chitchat`` the chat corpus
    (``training.chitchat``), written into the cache once; ``mixed`` both: WikiText-2's train and
    valid beside the chat corpus's, and the chat corpus's test (each model is measured on both
    tests by ``bench.corpora``).
    """
    if name == "auto":
        return named_corpus(DEFAULT_CORPUS)
    if name == "wikitext-2":
        return wikitext2_corpus()
    if name == "chitchat":
        return materialize(cache_dir() / f"chitchat-{CHITCHAT_VERSION}")
    if name == "mixed":
        folder = cache_dir() / f"mixed-wikitext-2-chitchat-{CHITCHAT_VERSION}"
        return mixed_corpus(folder, wikitext2_corpus(), named_corpus("chitchat"))
    return Path(name)


def mixed_corpus(folder: Path, wiki: Path, chat: Path) -> Path:
    """WikiText-2 and the chat corpus in one folder: train and valid concatenated, the chat test."""
    stamp = folder / "corpus.json"
    record = json.loads((chat / "corpus.json").read_text()) | {"mixed_with": str(wiki)}
    if stamp.is_file() and json.loads(stamp.read_text()) == record:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        parts = [chat / f"{split}.txt"] if split == "test" else [wiki / f"{split}.txt", chat / f"{split}.txt"]
        text = "\n".join(part.read_text(encoding="utf-8").rstrip("\n") for part in parts)
        (folder / f"{split}.txt").write_text(text + "\n", encoding="utf-8")
    stamp.write_text(json.dumps(record, indent=2) + "\n")
    return folder


def main() -> int:
    try:
        print(wikitext2_corpus())
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
