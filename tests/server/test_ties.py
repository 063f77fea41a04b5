"""Same input, same answer: equally likely words come in vocabulary order, alone, batched and under load.

The model is made to tie: a tiny model whose groups of words share one
embedding row (tied with the decoder) and one bias, so that every context
gives each group's words exactly the same probability, and whose biases put
the groups at the top. The groups are larger than the cut the server makes
(``top_k`` plus the special tokens it drops), so the cut falls inside a
group too. The rule: among equal probabilities the more frequent word, the
lower vocabulary id, comes first.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import torch

from bench.launcher import Server
from models.vocab import SPECIALS
from tests.conftest import TINY_TRAIN, serving
from tests.http_calls import generate, predict
from training.corpus import load_corpus
from training.export import export
from training.train import train

pytestmark = pytest.mark.slow

GROUP_SIZE = 6  # more than top_k 1 + the 3 specials the server asks for beyond it


@dataclass(frozen=True)
class TiedModel:
    tag: str
    top: list[str]  # always the likeliest words, all equally likely, in vocabulary order
    completing: list[str]  # the likeliest words that start with ``letter``, equally likely, in vocabulary order
    letter: str


@pytest.fixture(scope="module")
def tied_model(tiny_corpus_file: Path) -> TiedModel:
    config = replace(
        TINY_TRAIN, corpus=str(tiny_corpus_file), model_name="nextword-ties", softmax_cutoffs=(), recency_window=0
    )
    corpus = load_corpus(config.corpus)
    outcome = train(config, corpus)
    words = outcome.vocab.words
    top = list(range(len(SPECIALS), len(SPECIALS) + GROUP_SIZE))
    letter = next(
        c
        for c in "abcdefghijklmnopqrstuvwxyz"
        if not any(words[i].startswith(c) for i in top)
        and sum(w.startswith(c) for w in words[top[-1] + 1 :]) >= GROUP_SIZE
    )
    completing = [i for i in range(top[-1] + 1, len(words)) if words[i].startswith(letter)][:GROUP_SIZE]
    model = outcome.model
    with torch.no_grad():
        embedding, bias = model.embedding.weight, model.decoder.bias  # the decoder shares the embedding
        highest = float(bias.max())
        for group, lift in ((top, 10.0), (completing, 5.0)):
            embedding[group] = embedding[group[0]].clone()
            bias[group] = highest + lift
    tag = export(config, corpus, outcome)
    return TiedModel(tag, [words[i] for i in top], [words[i] for i in completing], letter)


@pytest.fixture(scope="module")
def tied_client(tied_model: TiedModel) -> Iterator[httpx.Client]:
    with serving(tied_model.tag) as client:
        yield client


TEXTS = ["", "the", "In 1990 , the", "He was born in", "the game was"]


def requests_of(model: TiedModel) -> list[dict]:
    """Inputs whose cut falls inside a group of equals, and inputs that show whole groups."""
    asks = []
    for text in TEXTS:
        asks += [{"text": text, "top_k": 1}, {"text": text, "top_k": 2}, {"text": text, "top_k": GROUP_SIZE + 2}]
        asks += [{"text": f"{text} {model.letter}", "complete": True, "top_k": k} for k in (1, 3)]
    return asks


def words(answer: dict) -> list[str]:
    return [p["word"] for p in answer["predictions"]]


def test_equal_probabilities_come_in_vocabulary_order(tied_client: httpx.Client, tied_model: TiedModel) -> None:
    for ask in requests_of(tied_model):
        (answer,) = predict(tied_client, ask)
        group = tied_model.completing if ask.get("complete") else tied_model.top
        k = ask["top_k"]
        assert words(answer)[: min(k, GROUP_SIZE)] == group[:k], ask
        probabilities = [p["probability"] for p in answer["predictions"][: min(k, GROUP_SIZE)]]
        assert len(set(probabilities)) == 1, (ask, probabilities)  # the model does tie them


def test_an_answer_does_not_depend_on_its_batch_or_the_load(tied_client: httpx.Client, tied_model: TiedModel) -> None:
    asks = requests_of(tied_model)
    alone = [words(predict(tied_client, ask)[0]) for ask in asks]
    together = [words(answer) for answer in predict(tied_client, *asks)]  # one batch: its cut is the largest top_k's
    assert together == alone
    reversed_batch = [words(answer) for answer in predict(tied_client, *reversed(asks))]
    assert reversed_batch[::-1] == alone
    with ThreadPoolExecutor(32) as pool:
        under_load = list(pool.map(lambda ask: words(predict(tied_client, ask)[0]), asks * 4))
    assert under_load == alone * 4


def test_greedy_generation_takes_the_first_of_equals(tied_client: httpx.Client, tied_model: TiedModel) -> None:
    asks = [{"prompt": text, "max_new_tokens": 4, "temperature": 0} for text in TEXTS]
    alone = [generate(tied_client, ask)[0] for ask in asks]
    assert all(answer["tokens"] == [tied_model.top[0]] * 4 for answer in alone), alone
    with ThreadPoolExecutor(16) as pool:
        under_load = list(pool.map(lambda ask: generate(tied_client, ask)[0], asks * 3))
    assert under_load == alone * 3


def test_excluded_and_blocked_words_leave_the_rest_of_the_group_in_order(
    tied_client: httpx.Client, tied_model: TiedModel, tmp_path: Path
) -> None:
    """The answer refills from the same group of equals, in vocabulary order, whether the words are
    excluded by the request or blocked by the server (NEXTWORD_BLOCKLIST, written in another case)."""
    gone = [tied_model.top[0], tied_model.top[2]]
    kept = [w for w in tied_model.top if w not in gone]
    completing_gone = [tied_model.completing[1]]
    completing_kept = [w for w in tied_model.completing if w not in completing_gone]
    for text in TEXTS:
        (answer,) = predict(tied_client, {"text": text, "top_k": 3, "exclude": gone})
        assert words(answer) == kept[:3], text
        ask = {"text": f"{text} {tied_model.letter}", "complete": True, "top_k": 3, "exclude": completing_gone}
        assert words(predict(tied_client, ask)[0]) == completing_kept[:3], text
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# words never offered\n" + "\n".join(w.upper() for w in gone + completing_gone) + "\n")
    env = {"NEXTWORD_MODEL": tied_model.tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_BLOCKLIST": str(blocklist)}
    with Server(env=env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for text in TEXTS:
            assert words(predict(client, {"text": text, "top_k": 3})[0]) == kept[:3], text
            ask = {"text": f"{text} {tied_model.letter}", "complete": True, "top_k": 3}
            assert words(predict(client, ask)[0]) == completing_kept[:3], text
            (greedy,) = generate(client, {"prompt": text, "max_new_tokens": 4, "temperature": 0})
            assert greedy["tokens"] == [kept[0]] * 4, text  # sampling never draws a blocked word
