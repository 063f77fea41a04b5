"""The everyday-English corpus: chat messages from the ``chitchat_dataset`` package, split by
conversation and by time, with a per-person split for evaluating what the service learns of a user.

``chitchat_dataset==0.9.0`` (PyPI, MIT) holds 7,168 open-topic conversations between people in one
JSON file. A conversation is a list of turns; a turn is the messages one person sent in a row, each
with its text, a timestamp and a sender. Each message is what a person typed and sent at once, so
each becomes one line, and so one text for the fresh-text evaluation (``corpus.json`` says so);
a conversation's messages follow each other in time order, and an empty line parts conversations.

The split, reproducible from the package alone (``PERSONAL_SEED``):

- **personal**: ``PERSONAL_SENDERS`` people, drawn among those who wrote at least
  ``PERSONAL_MIN_WORDS`` words. For each, their latest ``PERSONAL_TEST_SHARE`` of conversations
  (at least one) are their test set and the earlier ones their history: what the service may have
  learned of them before. None of their conversations is in train, valid or test.
- **train / valid / test**: every other conversation, in order of its first message's time: the
  earliest 80% train, the next 10% valid, the latest 10% test. No test conversation is seen in
  training, and every one comes after all of training's.

Usage::

    folder = materialize(cache_dir() / "chitchat")   # checks the package, writes the split once
    corpus = load_corpus(folder)                      # train/valid/test.txt as any corpus
    personal = load_personal(folder)                  # {sender: PersonalSplit(history, test)}
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import random
from dataclasses import dataclass
from pathlib import Path

from training.corpus import CorpusError

PACKAGE = "chitchat_dataset"
VERSION = "0.9.0"
DATASET_SHA256 = "d2a5d0bf6acf354fef51f3af39cbece2220d3b8f6086b658c3d335105798312a"  # its dataset.json
INSTALL_HINT = f"pip install {PACKAGE}=={VERSION} (make install does)"

PERSONAL_SENDERS = 20
PERSONAL_MIN_WORDS = 2_000
PERSONAL_TEST_SHARE = 0.25
PERSONAL_SEED = 2026
TRAIN_SHARE, VALID_SHARE = 0.8, 0.1


@dataclass(frozen=True)
class Message:
    text: str
    timestamp: str  # ISO 8601, UTC: sorts as text
    sender: str


@dataclass(frozen=True)
class Conversation:
    id: str
    messages: tuple[Message, ...]  # in time order

    @property
    def start(self) -> str:
        return self.messages[0].timestamp

    @property
    def senders(self) -> frozenset[str]:
        return frozenset(message.sender for message in self.messages)


@dataclass(frozen=True)
class PersonalSplit:
    """One person's messages: what they wrote before (history) and after (test), each by conversation."""

    history: list[list[str]]
    test: list[list[str]]


def dataset_path() -> Path:
    """The installed package's dataset.json, checked against the pinned version and hash."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise CorpusError(f"the chat corpus needs the {PACKAGE} package: {INSTALL_HINT}") from None
    if version != VERSION:
        raise CorpusError(f"{PACKAGE} {version} is installed, the chat corpus is pinned to {VERSION}: {INSTALL_HINT}")
    files = importlib.metadata.files(PACKAGE) or []
    found = next((file for file in files if file.name == "dataset.json"), None)
    if found is None:
        raise CorpusError(f"{PACKAGE} {version} has no dataset.json: reinstall it ({INSTALL_HINT})")
    path = Path(found.locate())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != DATASET_SHA256:
        raise CorpusError(f"{path} is not the pinned dataset (sha256 {digest}, expected {DATASET_SHA256})")
    return path


def read_conversations(path: Path) -> list[Conversation]:
    """Every conversation with at least one message that has text, its messages in time order."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    conversations = []
    for key, value in raw.items():
        messages = [
            Message(" ".join(piece["text"].split()), piece["timestamp"], piece["sender"])
            for turn in value["messages"]
            for piece in turn
            if piece["text"].strip()
        ]
        if messages:
            messages.sort(key=lambda message: message.timestamp)  # stable: a turn's order kept at equal times
            conversations.append(Conversation(key, tuple(messages)))
    return conversations


@dataclass(frozen=True)
class ChatSplit:
    train: list[Conversation]
    valid: list[Conversation]
    test: list[Conversation]
    personal: dict[str, PersonalSplit]


def split(conversations: list[Conversation]) -> ChatSplit:
    """The split the module's docstring describes."""
    words: dict[str, int] = {}
    for conversation in conversations:
        for message in conversation.messages:
            words[message.sender] = words.get(message.sender, 0) + len(message.text.split())
    prolific = sorted(sender for sender, count in words.items() if count >= PERSONAL_MIN_WORDS)
    people = sorted(random.Random(PERSONAL_SEED).sample(prolific, min(PERSONAL_SENDERS, len(prolific))))
    chosen = set(people)
    by_time = sorted(conversations, key=lambda conversation: (conversation.start, conversation.id))
    shared = [conversation for conversation in by_time if not conversation.senders & chosen]
    personal = {}
    for person in people:
        theirs = [conversation for conversation in by_time if person in conversation.senders]
        tested = max(1, round(len(theirs) * PERSONAL_TEST_SHARE))
        own = [[m.text for m in conversation.messages if m.sender == person] for conversation in theirs]
        personal[person] = PersonalSplit(history=own[:-tested], test=own[-tested:])
    train_end = int(len(shared) * TRAIN_SHARE)
    valid_end = train_end + int(len(shared) * VALID_SHARE)
    return ChatSplit(shared[:train_end], shared[train_end:valid_end], shared[valid_end:], personal)


def lines(conversations: list[Conversation]) -> list[str]:
    """One message a line, an empty line between conversations."""
    out: list[str] = []
    for conversation in conversations:
        if out:
            out.append("")
        out.extend(message.text for message in conversation.messages)
    return out


def materialize(folder: Path) -> Path:
    """Write the split into ``folder`` (once: a folder that holds it for this dataset is kept)."""
    path = dataset_path()
    stamp = folder / "corpus.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("dataset_sha256") == DATASET_SHA256:
        return folder
    chat = split(read_conversations(path))
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in ("train", "valid", "test"):
        conversations = getattr(chat, name)
        written = lines(conversations)
        (folder / f"{name}.txt").write_text("\n".join(written) + "\n", encoding="utf-8")
        sizes[name] = {
            "conversations": len(conversations),
            "messages": sum(len(c.messages) for c in conversations),
            "words": sum(len(line.split()) for line in written),
            "from": conversations[0].start if conversations else None,
            "to": max(c.messages[-1].timestamp for c in conversations) if conversations else None,
        }
    personal = {sender: {"history": s.history, "test": s.test} for sender, s in chat.personal.items()}
    (folder / "personal.json").write_text(json.dumps(personal), encoding="utf-8")
    sizes["personal"] = {
        "people": len(personal),
        "history_messages": sum(len(c) for s in chat.personal.values() for c in s.history),
        "test_messages": sum(len(c) for s in chat.personal.values() for c in s.test),
    }
    record = {"package": f"{PACKAGE}=={VERSION}", "dataset_sha256": DATASET_SHA256, "texts": "lines", "sizes": sizes}
    stamp.write_text(json.dumps(record, indent=2) + "\n")  # last: a folder with it is complete
    return folder


def load_personal(folder: Path) -> dict[str, PersonalSplit]:
    """The per-person split that ``materialize`` wrote."""
    raw = json.loads((folder / "personal.json").read_text(encoding="utf-8"))
    return {sender: PersonalSplit(value["history"], value["test"]) for sender, value in raw.items()}
