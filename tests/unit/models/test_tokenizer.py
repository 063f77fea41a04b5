import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from models.tokenizer import LEVELS, Shown, Tokenizer, TokenizerSettings, cased, ends_sentence, shown, starts_sentence

tok = Tokenizer()


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The sun rises in the", ["The", "sun", "rises", "in", "the"]),
        ("It's well-known.", ["It", "'s", "well", "@-@", "known", "."]),
        ("I don't know, we've seen it!", ["I", "don", "'t", "know", ",", "we", "'ve", "seen", "it", "!"]),
        (
            "It cost $1,000.50 (about 3.5-inch)",
            ["It", "cost", "$", "1", "@,@", "000", "@.@", "50", "(", "about", "3", "@.@", "5", "@-@", "inch", ")"],
        ),
        ('He said "yes" in the U.S.', ["He", "said", '"', "yes", '"', "in", "the", "U.S."]),
        ("Mr. Smith", ["Mr.", "Smith"]),
        ("how are you??? wow!! really?!", ["how", "are", "you", "???", "wow", "!!", "really", "?!"]),
        ("", []),
        ("   ", []),
    ],
)
def test_tokenize_raw_text(text: str, tokens: list[str]) -> None:
    assert tok.tokenize(text) == tokens


@pytest.mark.parametrize(
    "text",
    [
        "The well-known sun's rising.",
        'I don\'t know, he said: "it costs $1,000.50 (about 3.5-inch)" in the U.S.',
        "Mr. Smith went to St. Louis... and (then) left; 45% of it!",
        "are you there??? yes!! sure?!",
    ],
)
def test_detokenize_inverts_tokenize(text: str) -> None:
    assert tok.detokenize(tok.tokenize(text)) == text


def test_tokenize_is_idempotent_on_corpus_text(wikitext_dir) -> None:
    """WikiText-2 is already tokenized; reading it again must not change it (bar rare forms)."""
    lines = (wikitext_dir / "valid.txt").read_text(encoding="utf-8").splitlines()[:400]
    same = sum(tok.tokenize(line) == line.split() for line in lines)
    assert same / len(lines) > 0.97


def test_corpus_forms_join_back() -> None:
    tokens = "the 1 @,@ 000 @-@ year old , 3 @.@ 5 km long river 's mouth".split()
    assert tok.detokenize(tokens) == "the 1,000-year old, 3.5 km long river's mouth"


def test_lowercase_is_a_setting() -> None:
    assert Tokenizer(TokenizerSettings(lowercase=True)).tokenize("The Sun") == ["the", "sun"]
    assert tok.tokenize("The Sun") == ["The", "Sun"]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("ROMEO:\nBut soft", ["ROMEO", ":", "<eos>", "But", "soft"]),
        ("one\r\ntwo\n\nthree\n", ["one", "<eos>", "two", "<eos>", "<eos>", "three", "<eos>"]),
        ("'Tis o'er, ma'am", ["'Tis", "o'er", ",", "ma'am"]),
        ("upon's how'd they'd've", ["upon", "'s", "how", "'d", "they", "'d", "'ve"]),
        ("the players' union", ["the", "players", "'", "union"]),
        ("l'homme qu’il", ["l'homme", "qu’il"]),
        ("a <eos> typed", ["a", "<", "eos", ">", "typed"]),
    ],
)
def test_line_breaks_and_apostrophes(text: str, tokens: list[str]) -> None:
    assert tok.tokenize(text) == tokens


def test_a_play_round_trips() -> None:
    play = (
        "ROMEO:\n'Tis but thy name that is my enemy;\n\n"
        "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nHow'd ye come o'er?"
    )
    assert tok.detokenize(tok.tokenize(play)) == play


# Ordinary text, as people write it: words (with in-word apostrophes, clitics,
# hyphens, numbers), punctuation attached to the word before, brackets and
# double quotes around words, single spaces, line breaks between sentences.
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéüßøçñ"
_plain_word = st.text(_LETTERS, min_size=1, max_size=8)
_word = st.one_of(
    _plain_word,
    _plain_word.map(lambda w: w + "'s"),
    _plain_word.map(lambda w: w + "n't"),
    st.tuples(_plain_word, _plain_word).map("'".join),  # o'er
    # 'tis; a clitic after a space is WikiText's form ("don 't") and is glued back.
    _plain_word.filter(lambda w: w.lower() not in {"s", "t", "ve", "re", "m", "ll", "d"}).map(lambda w: "'" + w),
    st.tuples(_plain_word, _plain_word).map("-".join),
    st.integers(0, 10**7).map(lambda n: f"{n:,}"),
    st.tuples(st.integers(0, 999), st.integers(0, 99)).map(lambda p: f"{p[0]}.{p[1]}"),
)
_phrase = st.lists(_word, min_size=1, max_size=4).map(" ".join)
_piece = st.one_of(
    _phrase,
    _phrase.map(lambda p: f"({p})"),
    _phrase.map(lambda p: f'"{p}"'),
    st.tuples(_phrase, st.sampled_from([".", ",", ";", ":", "!", "?", "%", "..."])).map("".join),
)
_line = st.lists(_piece, min_size=1, max_size=6).map(" ".join)
ordinary_text = st.lists(st.one_of(_line, st.just("")), min_size=1, max_size=4).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(ordinary_text, st.data())
def test_ordinary_text_round_trips_up_to_white_space_runs(text: str, data: st.DataObject) -> None:
    assert tok.detokenize(tok.tokenize(text)) == text
    # Runs of white space instead of single spaces, and spaces around line breaks, change nothing.
    runs = st.sampled_from([" ", "  ", "\t", " \t "])
    spaced = "".join(c if c != " " else data.draw(runs) for c in text).replace("\n", data.draw(runs) + "\n")
    assert tok.detokenize(tok.tokenize(spaced)) == text


LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_keeps_its_characters_and_line_breaks(text: str) -> None:
    """Any string (bar corpus-form markers such as ``@-@``): only white space between tokens may change."""
    assume("@" not in text)
    back = tok.detokenize(tok.tokenize(text))
    assert re.sub(r"\s", "", back) == re.sub(r"\s", "", text)
    assert back.count("\n") == len(LINE_BREAKS.findall(text))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_characters_round_trip_exactly_but_line_breaks(text: str) -> None:
    assume("<unk>" not in text)
    chars = Tokenizer(TokenizerSettings(level="char"))
    assert chars.detokenize(chars.tokenize(text)) == LINE_BREAKS.sub("\n", text)
    assert chars.tokenize("Hi\r\nyo") == ["H", "i", "<eos>", "y", "o"]
    assert chars.tokenize("a <unk>.") == ["a", " ", "<unk>", "."]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(), ordinary_text, st.lists(st.sampled_from(["@-@", "@,@", "'", "n't", "-", "\r\n", " "])).map("".join)
    )
)
def test_no_text_has_more_tokens_than_characters(text: str) -> None:
    """What lets the request validator skip counting the tokens of a text no longer than the limit."""
    for level in LEVELS:
        assert len(Tokenizer(TokenizerSettings(level=level)).tokenize(text)) <= len(text)


@pytest.mark.parametrize(
    ("prompt", "tokens", "continuation"),
    [
        ("The game was", ["a", "hit", "."], " a hit."),  # ends in a word: a joining space
        ("The game was ", ["a", "hit"], "a hit"),  # ends in white space: none
        ("The game was\n", ["It", "sold"], "It sold"),  # after a line break: none
        ("The game was\n", ["<eos>", "It"], "\nIt"),
        ("Hello", [",", "world"], ", world"),  # punctuation that attaches
        ("Hello", ["'s", "end"], "'s end"),
        ("Hello.", ["It", "is"], " It is"),
        ("He paid (", ["in", "cash", ")"], "in cash)"),  # after an opening bracket
        ('He said "', ["yes", '"', "."], 'yes".'),  # inside an opened quote
        ('He said "yes"', ["and", "left"], " and left"),
        ("", ["The", "game"], "The game"),
        ("well", ["@-@", "known"], "-known"),
    ],
)
def test_a_continuation_joins_its_prompt(prompt: str, tokens: list[str], continuation: str) -> None:
    assert tok.detokenize(tokens, after=prompt) == continuation
    joiner = tok.detokenizer(after=prompt)
    assert "".join(joiner.piece(token) for token in tokens) == continuation  # streamed pieces add up


@settings(max_examples=300, deadline=None)
@given(ordinary_text, st.data())
def test_a_text_cut_anywhere_between_words_reads_whole_again(text: str, data: st.DataObject) -> None:
    """prompt + continuation is the whole text, wherever it is cut between two tokens."""
    tokens = tok.tokenize(text)
    cuts = [i for i in range(len(tokens) + 1) if not {*tokens[max(i - 1, 0) : i + 1]} & {"@-@", "@,@", "@.@"}]
    cut = data.draw(st.sampled_from(cuts))
    prompt = tok.detokenize(tokens[:cut])
    assert prompt + tok.detokenize(tokens[cut:], after=prompt) == text


IN_WORD = {"@-@": "-", "@,@": ",", "@.@": "."}


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        ordinary_text,
        st.lists(st.sampled_from(["well", "@-@", "@,@", "n't", "\r\n", " ", "İ"])).map("".join),
    ),
    st.sampled_from([TokenizerSettings(), TokenizerSettings(lowercase=True), TokenizerSettings(level="char")]),
)
def test_spans_locate_every_token_in_the_text(text: str, settings_: TokenizerSettings) -> None:
    """What /v1/completions' ``text_offset`` and ``tokens`` of an echoed prompt are cut from."""
    tokenizer = Tokenizer(settings_)
    tokens, spans = tokenizer.tokenize(text), tokenizer.spans(text)
    assert len(spans) == len(tokens)
    shared = settings_.lowercase and "İ" in text  # lower-casing splits İ in two: tokens may share it
    end = 0
    for token, (start, stop) in zip(tokens, spans, strict=True):
        assert (start >= end or shared) and start < stop <= len(text)  # in order, apart, not empty
        end = stop
        piece = text[start:stop]
        if token == "<eos>":
            assert LINE_BREAKS.fullmatch(piece), (token, piece)
        elif token in IN_WORD:  # a raw in-word separator (3.5, well-known) is read as the corpus form
            assert piece in (token, IN_WORD[token]), (token, piece)
        elif not shared:
            assert (piece.lower() if settings_.lowercase else piece) == token, (token, piece)


def test_spans_split_a_compound_into_its_parts() -> None:
    text = "a well@-@known song"
    assert [text[a:b] for a, b in tok.spans(text)] == ["a", "well", "@-@", "known", "song"]


# The corpus's markup and clitic forms, and punctuation, as a person writes them:
# (token, written, joins the word before, the next word joins it).
SHOWN = [
    ("@-@", "-", True, True),
    ("@,@", ",", True, True),
    ("@.@", ".", True, True),
    ("'s", "'s", True, False),
    ("'t", "'t", True, False),
    ("'ve", "'ve", True, False),
    ("'re", "'re", True, False),
    ("'m", "'m", True, False),
    ("'ll", "'ll", True, False),
    ("'d", "'d", True, False),
    ("\u2019s", "\u2019s", True, False),
    (".", ".", True, False),
    ("???", "???", True, False),
    ("?!", "?!", True, False),
    (",", ",", True, False),
    (";", ";", True, False),
    (":", ":", True, False),
    ("!", "!", True, False),
    ("?", "?", True, False),
    (")", ")", True, False),
    ("]", "]", True, False),
    ("%", "%", True, False),
    ("...", "...", True, False),
    ("(", "(", False, True),
    ("[", "[", False, True),
    ("$", "$", False, True),
    ("known", "known", False, False),
    ("o'er", "o'er", False, False),
    ("'tis", "'tis", False, False),
]


@pytest.mark.parametrize(("token", "written", "joins_previous", "joins_next"), SHOWN)
def test_a_token_is_shown_as_a_person_writes_it(token: str, written: str, joins_previous: bool, joins_next: bool):
    assert shown(token) == Shown(written, joins_previous, joins_next)


def test_a_quote_opens_or_closes_by_the_text_before_it() -> None:
    assert shown('"') == Shown('"', False, True)  # no quote open: it opens one, the next word joins it
    assert shown('"', quote_open=True) == Shown('"', True, False)  # it closes the open one


@pytest.mark.parametrize(("token", "written", "joins_previous", "joins_next"), SHOWN)
def test_shown_joins_as_the_detokenizer_does(token: str, written: str, joins_previous: bool, joins_next: bool):
    """ "a", the token and "b", joined as ``shown`` says, read as the detokenizer writes them."""
    by_shown = "a" + ("" if joins_previous else " ") + written + ("" if joins_next else " ") + "b"
    assert by_shown == Tokenizer().detokenize(["a", token, "b"])


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab1,.-' \n\r\t\"()<>unk")), max_size=400), most=st.integers(1, 40))
def test_the_end_of_a_text_is_the_whole_texts_last_tokens(text: str, most: int) -> None:
    for tokenizer in (Tokenizer(), Tokenizer(TokenizerSettings(level="char"))):
        tokens, start, cut = tokenizer.tokenize_end(text, most)
        whole = tokenizer.tokenize(text)
        assert tokens == whole[-most:] and cut == (len(whole) > most)
        assert tokenizer.tokenize(text[start:])[-most:] == tokens


@pytest.mark.parametrize(
    ("text", "starting"),
    [
        ("", True),
        ("   ", True),
        ("Hi.", True),
        ("Hi. ", True),
        ('He said "no." ', True),
        ("Hi!\n", True),
        ("line\n", True),
        ("(why?) ", True),
        ("the", False),
        ("the ", False),
        ("e.g", False),
        ("1,", False),
    ],
)
def test_a_sentence_starts_after_its_end_or_nothing(text: str, starting: bool) -> None:
    assert starts_sentence(text) is starting


def test_a_word_is_cased_as_the_person_types_it() -> None:
    assert cased("hello", "hel", sentence_start=False) == "hello"
    assert cased("hello", "hel", sentence_start=True) == "Hello"
    assert cased("hello", "Hel", sentence_start=False) == "Hello"
    assert cased("hello", "HEL", sentence_start=False) == "HELLO"
    assert cased("hello", "H", sentence_start=False) == "Hello"  # one capital: the start of a word
    assert cased("hello", "", sentence_start=True) == "Hello" and cased("hello", "", sentence_start=False) == "hello"


@pytest.mark.parametrize(
    ("token", "ends"),
    [
        (".", True),
        ("?", True),
        ("!", True),
        ("???", True),
        ("?!", True),
        ("...", False),
        (",", False),
        ("well", False),
        ("U.S.", False),
    ],
)
def test_a_sentence_ends_at_a_full_stop_or_a_run_of_marks(token: str, ends: bool) -> None:
    assert ends_sentence(token) is ends
