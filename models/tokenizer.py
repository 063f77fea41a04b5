"""One tokenizer for training and serving, in WikiText's conventions, for any text.

WikiText separates words and punctuation with spaces, splits clitics
("don 't", "lobster 's") and writes in-word separators as their own tokens:
``well @-@ known``, ``1 @,@ 000``, ``3 @.@ 5``. ``tokenize`` turns raw user
text into tokens of that kind and is idempotent on text already in that form,
so the same function reads the corpus and the requests. ``detokenize`` turns
tokens back into readable text: for ordinary text,
``detokenize(tokenize(text))`` is the text again up to runs of white space
(tested with generated strings in tests/unit/models/test_tokenizer.py).

Text other than WikiText: a line break is a token, ``<eos>`` (the name
WikiText and PyTorch's word_language_model give the end of a line), so
prompts keep their lines and generated text has them. An apostrophe inside a
word stays in it (``o'er``, ``ma'am``) and one that starts a word glues to it
(``'tis``), except the English clitics ``'s 't 've 're 'm 'll 'd`` at a word's
end, split as in WikiText. ``<eot>`` ends a whole text (``models.vocab``);
typed text never produces it.

A character-level model (``TokenizerSettings(level="char")``) reads text as
its characters, a line break again as ``<eos>`` and WikiText's ``<unk>`` as
one unknown token.

Usage::

    tok = Tokenizer(TokenizerSettings(lowercase=False))
    tok.tokenize("The well-known sun's rising.\n'Tis o'er.")
    # ['The', 'well', '@-@', 'known', 'sun', "'s", 'rising', '.', '<eos>', "'Tis", "o'er", '.']
    tok.detokenize(['rises', 'in', 'the', 'east', '.'])  # 'rises in the east.'
    shown("@-@")  # Shown(text="-", joins_previous=True, joins_next=True): a token offered to a person as a word
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

UNK = "<unk>"
LINE_BREAK = "<eos>"
END_OF_TEXT = "<eot>"

_ABBREVIATIONS = "Mr|Mrs|Ms|Dr|St|No|Jr|Sr|Mt|Co|Ltd|Inc|Gen|Lt|Col|Capt|Sgt|vs"
_APOSTROPHE = "['\u2019]"
_CLITIC_TEXT = rf"(?i:{_APOSTROPHE}(?:s|t|ve|re|m|ll|d))(?!\w)"
# A word, with the apostrophes inside it that do not start a clitic at its end.
_WORD = rf"\w+(?:(?!{_CLITIC_TEXT}){_APOSTROPHE}\w+)*"
# The same line boundaries as str.splitlines, which reads the corpus into lines.
_LINE_BREAKS = r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]"
# WikiText's <unk> stays one (unknown) token at the character level too, not five characters.
_CHARACTER = re.compile(rf"(?P<line_break>{_LINE_BREAKS})|(?P<unk><unk>)|.", re.DOTALL)
_CHARACTER_TOKENS = {"line_break": LINE_BREAK, "unk": UNK}  # by group name; other characters are themselves
_PIECE = re.compile(
    rf"(?P<line_break>{_LINE_BREAKS})"
    r"|(?P<compound>\d+(?:[.,]\d+)+(?:-\w+)*|\w+(?:-\w+)+)"  # 1,000 / 3.5-inch / well-known
    r"|<unk>|@[-,.]@"  # already in corpus form
    r"|(?:[A-Za-z]\.){2,}|[A-Z]\.(?=\s)"  # U.S., e.g., H. americanus
    rf"|(?:{_ABBREVIATIONS})\.(?!\w)"  # Mr., No.
    rf"|{_CLITIC_TEXT}"  # clitics: 's 't 've ...
    rf"|{_WORD}"
    rf"|(?<!\w){_APOSTROPHE}{_WORD}"  # 'tis, 'em
    r"|\.\.\."
    r"|[?!]{2,}"  # "???", "?!": one mark typed with emphasis, not marks that follow each other
    r"|\S"
)
_IN_WORD_SEPARATOR = re.compile(r"([-.,])")
_TOKEN_START = re.compile(rf"\S|{_LINE_BREAKS}")  # where a word-level token starts: anything but a space
_JOINERS = {"@-@": "-", "@,@": ",", "@.@": "."}
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "...", "'", "\u2019"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "£", "€"}
_CLITIC = re.compile(rf"(?i){_APOSTROPHE}(?:s|t|ve|re|m|ll|d)")
_MARKS = re.compile(r"[?!]+")  # "?", "!!!", "?!": closing marks, written against the word before


LEVELS = ("word", "char")
CHARACTERS_PER_TOKEN = 8  # tokenize_end's first guess at how much of a text its last tokens take


@dataclass(frozen=True)
class TokenizerSettings:
    """Settings recorded with a model: serving must tokenize as training did."""

    lowercase: bool = False
    level: str = "word"  # "word" or "char"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class Tokenizer:
    """Raw text <-> WikiText-style tokens."""

    def __init__(self, settings: TokenizerSettings | None = None) -> None:
        self.settings = settings or TokenizerSettings()
        self.characters = self.settings.level == "char"

    def tokenize(self, text: str) -> list[str]:
        """Split raw text into corpus-style tokens (or characters), a line break into ``<eos>``."""
        if self.settings.lowercase:
            text = text.lower()
        if self.characters:
            return [_CHARACTER_TOKENS.get(match.lastgroup, match.group()) for match in _CHARACTER.finditer(text)]
        tokens: list[str] = []
        for match in _PIECE.finditer(text):
            if match.lastgroup == "line_break":
                tokens.append(LINE_BREAK)
            elif match.lastgroup == "compound":
                tokens.extend(_split_in_word(match.group()))
            else:
                tokens.append(match.group())
        return tokens

    def tokenize_end(self, text: str, most: int) -> tuple[list[str], int, bool]:
        """The last ``most`` tokens of ``text``, reading only as much of its end as they need.

        Returns the tokens, where in ``text`` the part read starts, and whether tokens before them
        were left out. The text is cut just after a white space character: no token spans one, and
        the tokenizer reads what follows one the same way whatever came before, so the tokens are
        the whole text's last ones. The part read grows until it holds ``most`` tokens, so the cost
        follows ``most``, not the text's length.
        """
        width = CHARACTERS_PER_TOKEN * most
        while True:
            if width >= len(text):
                tokens = self.tokenize(text)
                return tokens[-most:], 0, len(tokens) > most
            cut = next((i + 1 for i in range(len(text) - width, len(text)) if _cuts_after(text, i)), None)
            if cut is not None:
                tokens = self.tokenize(text[cut:])
                if len(tokens) >= most:
                    # Left out: more tokens read than kept, or any token before the cut (a character, for a
                    # character-level model; else anything but spaces, a line break being a token too).
                    before = cut > 0 if self.characters else _TOKEN_START.search(text, 0, cut) is not None
                    return tokens[-most:], cut, len(tokens) > most or before
            width *= 2

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where each token of ``tokenize(text)`` lies in ``text``: (start, end) offsets; each part of a
        split compound (``well @-@ known``) has its own, and a line break's covers its characters."""
        read = text.lower() if self.settings.lowercase else text
        found: list[tuple[int, int]] = []
        if self.characters:
            found = [match.span() for match in _CHARACTER.finditer(read)]
        else:
            for match in _PIECE.finditer(read):
                if match.lastgroup != "compound":
                    found.append(match.span())
                    continue
                start = match.start()
                for part in _IN_WORD_SEPARATOR.split(match.group()):
                    if part:
                        found.append((start, start + len(part)))
                        start += len(part)
        if len(read) == len(text):
            return found
        # Lower-casing lengthened some character (İ -> i̇): map the offsets back to the text's own. A
        # token cut from inside such a character gets the whole character (two tokens may share it).
        back = [i for i, char in enumerate(text) for _ in range(len(char.lower()))]
        return [(back[start], back[end - 1] + 1) for start, end in found]

    def detokenize(self, tokens: list[str], after: str = "") -> str:
        """Join tokens into readable text: no space before ``.``, ``@-@`` -> ``-``, ``<eos>`` -> a line break.

        With ``after``, the tokens continue that text, and the result is what follows it:
        ``after + detokenize(tokens, after)`` reads as one text (see ``detokenizer``).
        """
        joiner = self.detokenizer(after)
        return "".join(joiner.piece(token) for token in tokens)

    def detokenizer(self, after: str = "") -> Detokenizer:
        """A joiner for one text's tokens, one at a time (for streaming), continuing the text ``after``.

        The continuation joins ``after`` as a person reads it: a space first when ``after``
        ends in a word (``The game was`` + `` a``), none when it ends in white space or a
        line break, and none before punctuation that attaches (``Hello`` + ``,``) or
        after an opening bracket or quote.
        """
        joiner = Detokenizer(self.characters)
        if not self.characters and after:
            # Only two things of ``after`` shape what follows: whether a quote is open, and its last token.
            # Every '"' is a token of its own, so counting them is reading them all; the rest of the text
            # need not be tokenized, and a long text costs no more than a short one.
            tokens, _, _ = self.tokenize_end(after, 1)
            last = tokens[-1] if tokens else LINE_BREAK  # only spaces: joined as after a line break
            joiner.quote_open = (after.count('"') - (last == '"')) % 2 == 1
            joiner.piece(last)
            if after[-1].isspace():
                joiner.attach = True
        return joiner


@dataclass(frozen=True, slots=True)
class Shown:
    """A token as a person writes it, and how it joins the words around it: what a client that
    offers it as a word (a keyboard's strip) needs to put it in a text without knowing WikiText."""

    text: str  # "-" for "@-@", "," for "@,@", "." for "@.@"; every other token as it is
    joins_previous: bool  # no space before it: in-word separators, clitics ('s, 't), closing punctuation
    joins_next: bool  # no space after it: in-word separators, opening brackets, an opening quote


def shown(token: str, quote_open: bool = False) -> Shown:
    """``token`` as a person writes it; ``quote_open``: the text so far has an unclosed ``"``, which
    this one then closes. The same rules as ``Detokenizer``, for one token offered on its own."""
    if token in _JOINERS:
        return Shown(_JOINERS[token], True, True)
    if token == '"':
        return Shown(token, quote_open, not quote_open)
    return Shown(token, joins_previous(token), token in _NO_SPACE_AFTER)


def ends_sentence(token: str) -> bool:
    """Whether ``token`` closes a sentence: ``.``, or a run of ``?`` and ``!`` ("?", "???", "?!")."""
    return token == "." or _MARKS.fullmatch(token) is not None


def joins_previous(token: str) -> bool:
    """Whether ``token`` is written against the one before it, with no space."""
    return token in _NO_SPACE_BEFORE or _CLITIC.fullmatch(token) is not None or _MARKS.fullmatch(token) is not None


# str.splitlines' line breaks ("\r\n" ends in "\n"; a lone "\r" reads as a space here)
_LINE_BREAKS = "\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def starts_sentence(text: str, end: int | None = None) -> bool:
    """Whether a word after ``text[:end]`` begins a sentence: nothing before it, or the end of one
    (``.``, ``!``, ``?``, a line break), with spaces and closing quotes or brackets after it. Reads
    back from ``end`` only as far as that takes, so a long text costs no more than a short one."""
    i = len(text) if end is None else end
    while i > 0 and text[i - 1] not in _LINE_BREAKS and (text[i - 1].isspace() or text[i - 1] in "\"')]"):
        i -= 1
    return i == 0 or text[i - 1] in ".!?" or text[i - 1] in _LINE_BREAKS


def cased(word: str, typed: str, sentence_start: bool) -> str:
    """A lower-casing model's word as the person writing would case it: as their typed start of it
    (``Hel`` -> ``Hello``, ``HEL`` -> ``HELLO``), and capitalized where a sentence starts."""
    if len(typed) > 1 and typed.isupper():
        return word.upper()
    if typed[:1].isupper() or sentence_start:
        return word[:1].upper() + word[1:]
    return word


IN_WORD_SEPARATORS = tuple(_JOINERS)  # the tokens written as another token is: "@-@" as "-"


def is_in_word_separator(token: str) -> bool:
    """``@-@``, ``@,@`` or ``@.@``: the token joins the words on both sides into one written word."""
    return token in _JOINERS


class Detokenizer:
    """Joins tokens one at a time, for streaming: the pieces add up to ``Tokenizer.detokenize``."""

    def __init__(self, characters: bool = False) -> None:
        self.characters = characters  # characters join as they are
        self.attach = True  # no space before the next token
        self.quote_open = False

    def piece(self, token: str) -> str:
        """The text this token adds after the ones before it."""
        if self.characters:
            return "\n" if token == LINE_BREAK else token
        if token == LINE_BREAK:
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
        glue = self.attach or joins_previous(token)
        self.attach = token in _NO_SPACE_AFTER
        return token if glue else " " + token


def _cuts_after(text: str, i: int) -> bool:
    """Whether ``tokenize_end`` may read ``text`` from just after ``text[i]``: a white space
    character, but not the ``\r`` of a ``\r\n``, which is one line break."""
    return text[i].isspace() and not (text[i] == "\r" and text[i + 1 : i + 2] == "\n")


def _split_in_word(piece: str) -> list[str]:
    """``well-known`` -> ``well @-@ known``; ``1,000.5`` -> ``1 @,@ 000 @.@ 5``."""
    parts = _IN_WORD_SEPARATOR.split(piece)
    return [f"@{p}@" if p in "-.," else p for p in parts if p]
