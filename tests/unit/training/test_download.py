"""The default-corpus download, against a local HTTP server serving a small archive."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.launcher import free_port
from training.corpus import CorpusError, load_corpus
from training.download import WIKITEXT2_MEMBERS, ensure_wikitext2


@pytest.fixture
def archive_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Serve a WikiText-shaped zip over loopback; yields (url, sha256)."""
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "wikitext-2-v1.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for split, member in WIKITEXT2_MEMBERS.items():
            zipped.writestr(member, f" = {split} = \n" + " the cat sat on the mat .\n" * 200)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/wikitext-2-v1.zip"
        yield url, hashlib.sha256(archive.read_bytes()).hexdigest()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_verifies_and_unpacks_once(archive_server, tmp_path: Path) -> None:
    url, sha256 = archive_server
    target = tmp_path / "cache" / "wikitext-2"
    assert ensure_wikitext2(target, (url,), sha256) == target
    corpus = load_corpus(target)
    assert corpus.train[0] == " = train = " and len(corpus.test) == 201
    # A second call uses the cache: even a dead URL is not contacted.
    assert ensure_wikitext2(target, ("http://127.0.0.1:9/none.zip",), sha256) == target


def test_checksum_mismatch_is_refused(archive_server, tmp_path: Path) -> None:
    url, _ = archive_server
    target = tmp_path / "cache" / "wikitext-2"
    with pytest.raises(CorpusError, match="checksum mismatch"):
        ensure_wikitext2(target, (url,), "0" * 64)
    assert not target.exists()


def test_offline_error_says_how_to_point_at_a_corpus(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/wikitext-2-v1.zip"
    with pytest.raises(CorpusError, match="CORPUS="):
        ensure_wikitext2(tmp_path / "wikitext-2", (dead,), "0" * 64)


def test_falls_back_to_the_next_url(archive_server, tmp_path: Path) -> None:
    url, sha256 = archive_server
    missing = url.replace("wikitext-2-v1.zip", "missing.zip")
    target = ensure_wikitext2(tmp_path / "wikitext-2", (missing, url), sha256)
    assert (target / "valid.txt").is_file()
