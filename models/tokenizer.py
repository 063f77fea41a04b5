"""One tokenizer for training and serving, in WikiText's conventions.

WikiText separates words and punctuation with spaces, splits clitics
("don 't", "lobster 's") and writes in-word separators as their own tokens:
``well @-@ known``, ``1 @,@ 000``, ``3 @.@ 5``. ``tokenize`` turns raw user
text into tokens of that kind and is idempotent on text already in that form,
so the same function reads the corpus and the requests. ``detokenize`` turns
tokens back into readable text.

Usage::

    tok = Tokenizer(TokenizerSettings(lowercase=False))
    tok.tokenize("The well-known sun's rising.")
    # ['The', 'well', '@-@', 'known', 'sun', "'s", 'rising', '.']
    tok.detokenize(['rises', 'in', 'the', 'east', '.'])  # 'rises in the east.'
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

UNK = "<unk>"
EOS = "<eos>"

_ABBREVIATIONS = "Mr|Mrs|Ms|Dr|St|No|Jr|Sr|Mt|Co|Ltd|Inc|Gen|Lt|Col|Capt|Sgt|vs"
_PIECE = re.compile(
    r"(?P<compound>\d+(?:[.,]\d+)+(?:-\w+)*|\w+(?:-\w+)+)"  # 1,000 / 3.5-inch / well-known
    r"|<unk>|<eos>|@[-,.]@"  # already in corpus form
    r"|(?:[A-Za-z]\.){2,}|[A-Z]\.(?=\s)"  # U.S., e.g., H. americanus
    rf"|(?:{_ABBREVIATIONS})\.(?!\w)"  # Mr., No.
    r"|(?i:'(?:s|t|ve|re|m|ll|d))(?!\w)"  # clitics: 's 't 've ...
    r"|\w+"
    r"|\.\.\."
    r"|\S"
)
_IN_WORD_SEPARATOR = re.compile(r"([-.,])")
_JOINERS = {"@-@": "-", "@,@": ",", "@.@": "."}
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "...", "'"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "£", "€"}
_CLITIC = re.compile(r"(?i)'(?:s|t|ve|re|m|ll|d)")


@dataclass(frozen=True)
class TokenizerSettings:
    """Settings recorded with a model: serving must tokenize as training did."""

    lowercase: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class Tokenizer:
    """Raw text <-> WikiText-style tokens."""

    def __init__(self, settings: TokenizerSettings | None = None) -> None:
        self.settings = settings or TokenizerSettings()

    def tokenize(self, text: str) -> list[str]:
        """Split raw text into corpus-style tokens (no ``<eos>`` is added)."""
        if self.settings.lowercase:
            text = text.lower()
        tokens: list[str] = []
        for match in _PIECE.finditer(text):
            if match.lastgroup == "compound":
                tokens.extend(_split_in_word(match.group()))
            else:
                tokens.append(match.group())
        return tokens

    @staticmethod
    def detokenize(tokens: list[str]) -> str:
        """Join tokens into readable text: no space before ``.``, ``@-@`` -> ``-``."""
        joiner = Detokenizer()
        return "".join(joiner.piece(token) for token in tokens)


class Detokenizer:
    """Joins tokens one at a time, for streaming: the pieces add up to ``Tokenizer.detokenize``."""

    def __init__(self) -> None:
        self.attach = True  # no space before the next token
        self.quote_open = False

    def piece(self, token: str) -> str:
        """The text this token adds after the ones before it."""
        if token == EOS:
            self.attach = True
            return "\n"
        if token in _JOINERS:
            self.attach = True
            return _JOINERS[token]
        if token == '"':
            self.quote_open = not self.quote_open
            text = token if self.attach or not self.quote_open else " " + token
            self.attach = self.quote_open
            return text
        glue = self.attach or token in _NO_SPACE_BEFORE or _CLITIC.fullmatch(token)
        self.attach = token in _NO_SPACE_AFTER
        return token if glue else " " + token


def _split_in_word(piece: str) -> list[str]:
    """``well-known`` -> ``well @-@ known``; ``1,000.5`` -> ``1 @,@ 000 @.@ 5``."""
    parts = _IN_WORD_SEPARATOR.split(piece)
    return [f"@{p}@" if p in "-.," else p for p in parts if p]
