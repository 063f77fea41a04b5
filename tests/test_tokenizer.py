import pytest

from models.tokenizer import Tokenizer, TokenizerSettings

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
    ],
)
def test_detokenize_inverts_tokenize(text: str) -> None:
    assert tok.detokenize(tok.tokenize(text)) == text


def test_tokenize_is_idempotent_on_corpus_text(corpus_dir) -> None:
    """The corpus is already tokenized; reading it again must not change it (bar rare forms)."""
    lines = (corpus_dir / "valid.txt").read_text(encoding="utf-8").splitlines()[:400]
    same = sum(tok.tokenize(line) == line.split() for line in lines)
    assert same / len(lines) > 0.97


def test_corpus_forms_join_back() -> None:
    tokens = "the 1 @,@ 000 @-@ year old , 3 @.@ 5 km long river 's mouth".split()
    assert tok.detokenize(tokens) == "the 1,000-year old, 3.5 km long river's mouth"


def test_lowercase_is_a_setting() -> None:
    assert Tokenizer(TokenizerSettings(lowercase=True)).tokenize("The Sun") == ["the", "sun"]
    assert tok.tokenize("The Sun") == ["The", "Sun"]
