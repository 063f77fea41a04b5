"""Request and response models: the HTTP contract, validated at the edge.

Every field has bounds, a description and an example; these feed the OpenAPI
schema on ``/docs.json`` and the tests. Token caps are checked here with the
serving tokenizer, so an over-long input is refused before it is batched.
A valid input becomes the engine's type (``NextWordInput.query``,
``GenerateInput.request``), and the engine's results become responses here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import bentoml
from bentoml.validators import ContentType
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

from models.tokenizer import Tokenizer
from service.engine.types import Generation, GenerationRequest, NextWordQuery
from service.settings import SETTINGS

# Lower-casing does not change how many tokens a text has, so the default
# tokenizer can count tokens for any model.
_COUNTING_TOKENIZER = Tokenizer()
MAX_TOP_K = 100
MAX_STOP_STRINGS = 8
MAX_STOP_CHARS = 100
MAX_EXCLUDED_WORDS = 100
MAX_EXCLUDED_CHARS = 64


def check_token_count(value: str) -> str:
    # Every token covers at least one character (a property test says so), so a
    # text no longer than the limit is within it: most requests skip tokenizing
    # here, on the event loop, which the model thread does again anyway.
    if len(value) <= SETTINGS.max_text_tokens:
        return value
    count = len(_COUNTING_TOKENIZER.tokenize(value))
    if count > SETTINGS.max_text_tokens:
        raise ValueError(f"has {count} tokens, more than the limit of {SETTINGS.max_text_tokens}")
    return value


def check_text_limits(value: str) -> str:
    """A text within NEXTWORD_MAX_TEXT_CHARS and NEXTWORD_MAX_TEXT_TOKENS."""
    if len(value) > SETTINGS.max_text_chars:
        raise ValueError(f"has {len(value)} characters, more than the limit of {SETTINGS.max_text_chars}")
    return check_token_count(value)


def within_limits_unless_truncated(value: str, info: ValidationInfo) -> str:
    """A text or prompt within the limits (``check_text_limits``), unless the input reads only its
    end (``truncate``, declared before the text, so validated first)."""
    if info.data.get("truncate") is not None:
        return value
    return check_text_limits(value)


def truncate_field(description: str) -> Any:
    """An input's ``truncate``: how many of a text's last tokens to read, up to NEXTWORD_MAX_TEXT_TOKENS.
    Declared before the text, whose limits it lifts (``within_limits_unless_truncated``)."""
    return Field(default=None, ge=1, le=SETTINGS.max_text_tokens, description=description, examples=[128])


class _Strict(BaseModel):
    """Unknown fields are refused, and types are strict: no "5" or true for a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


class NextWordInput(_Strict):
    """One prefix whose next word is wanted."""

    truncate: int | None = truncate_field(
        "Read only the text's last this many tokens (before the word being completed): a text of any "
        f"length, up to the body limit, is then accepted, and only its end is read. Without it a text "
        f"has at most {SETTINGS.max_text_chars} characters and {SETTINGS.max_text_tokens} tokens. The "
        "model reads the kept tokens from a fresh state, so its answer can differ from the whole text's; "
        "`truncated` says whether any token was left out."
    )
    text: str = Field(
        max_length=SETTINGS.max_body_bytes,
        description=(
            "Raw text prefix, tokenized as in training; an empty string asks for the first word of a text. "
            f"At most {SETTINGS.max_text_chars} characters and {SETTINGS.max_text_tokens} tokens (words and "
            "punctuation marks), else 400, unless `truncate` is given."
        ),
        examples=["the sun rises in the"],
    )
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K, description="How many next words to return.", examples=[5])
    complete: bool = Field(
        default=False,
        description=(
            "Read the text's last word, when the text does not end in white space, as partly typed: "
            "answer the vocabulary words that start with it (as the model's tokenizer reads it, so "
            "case-insensitively for a lower-casing model), ranked by the model's probability after the "
            "text before it, with probabilities renormalized over those words. "
            "`fragment`, `matching_words` and `matching_probability` say what was completed. "
            "A character-level model extends the fragment (its trailing letters, digits and apostrophes) "
            "character by character instead, and has no vocabulary of words to count."
        ),
        examples=[True],
    )

    correct_typos: bool = Field(
        default=True,
        description=(
            "When completing, and fewer than `top_k` vocabulary words start with the fragment, fill the "
            "other slots with words one slip of the finger away from it (an adjacent key, a key missed or "
            "pressed twice, two keys swapped; QWERTY), likeliest first by the model's probability and the "
            "slip's weight; they come after every exact match, with `correction: true`. The probabilities "
            "of such an answer are then among the exact matches and the corrections together, each "
            "correction's times its slip's weight: the chance that it is the word meant. Fragments "
            "of one character are not corrected; a character-level model does not correct."
        ),
        examples=[True],
    )
    exclude: list[Annotated[str, Field(max_length=MAX_EXCLUDED_CHARS)]] = Field(
        default=[],
        max_length=MAX_EXCLUDED_WORDS,
        description=(
            "Words never to offer in this answer, as written (`-` names `@-@`) or as an answer's `token`, in "
            "any case; the answer still holds `top_k` words, the likeliest of the others. A typing client "
            "sends the words it showed at the earlier letters of the word being typed: the person typed "
            "past them, and their slots go to other words. The server's own blocklist "
            "(`NEXTWORD_BLOCKLIST`) applies to every request besides."
        ),
        examples=[["the", "a"]],
    )

    _limits = field_validator("text")(within_limits_unless_truncated)

    def query(self) -> NextWordQuery:
        return NextWordQuery(
            self.text, self.top_k, self.complete, tuple(self.exclude), self.truncate, self.correct_typos
        )


class WordProbability(BaseModel):
    word: str = Field(
        description=(
            "The next word as a person writes it: a vocabulary word (never <unk>, a line break or the end of a "
            "text), with the corpus's in-word separators written as they are typed (`-` for `@-@`, `,` for "
            "`@,@`, `.` for `@.@`); when completing a compound (`well-kn`), the whole compound (`well-known`). "
            "For a character-level model, a run of letters, digits and apostrophes, or one punctuation mark."
        ),
        examples=["east"],
    )
    token: str = Field(description="The model's own token for it (`@-@` where `word` is `-`).", examples=["east"])
    joins_previous: bool = Field(
        description=(
            "Written without a space before it: a hyphen or other in-word separator, a clitic (`'s`, `'t`), "
            "closing punctuation, a closing quote. A client removes the white space before it."
        ),
        examples=[False],
    )
    joins_next: bool = Field(
        description=(
            "The word after it follows without a space: an in-word separator, an opening bracket or quote. "
            "A client adds no space after it."
        ),
        examples=[False],
    )
    probability: float = Field(
        description=(
            "The model's probability that this word comes next; when completing a word, "
            "its probability among the words that start with the fragment (and the corrections, when "
            "the answer has any)."
        ),
        examples=[0.41],
    )
    correction: bool = Field(
        default=False,
        description=(
            "A completion that does not start with the fragment: the word one slip of the finger away "
            "that the person may have meant (`correct_typos`). It replaces `fragment` as any completion does."
        ),
        examples=[False],
    )


class NextWordOutput(BaseModel):
    predictions: list[WordProbability] = Field(description="Most likely next words, most probable first.")
    tokens: int = Field(
        description=(
            "Tokens in the prefix (before the fragment, when completing); characters for a character-level model."
        ),
        examples=[5],
    )
    unknown: int = Field(description="Prefix tokens outside the vocabulary (read as <unk>).", examples=[0])
    truncated: bool = Field(
        default=False, description="Tokens before the last `truncate` ones were left out.", examples=[False]
    )
    fragment: str | None = Field(
        default=None,
        description=(
            "The partly typed word that was completed, as typed: the characters at the text's end that a "
            "prediction's `word` replaces (`well-kn` for a compound); null when none was."
        ),
        examples=["rel"],
    )
    matching_words: int | None = Field(
        default=None,
        description=(
            "How many vocabulary words start with the fragment; 0 (and no predictions) when none does; "
            "null for a character-level model."
        ),
        examples=[57],
    )
    line_break_probability: float | None = Field(
        default=None,
        description=(
            "The model's probability that a line break comes next (line breaks are never among the predictions); "
            "null when completing a word."
        ),
        examples=[0.02],
    )
    matching_probability: float | None = Field(
        default=None,
        description=(
            "The model's total probability of the words that start with the fragment; null for a character-level model."
        ),
        examples=[0.031],
    )


# A character that every regex dialect (ECMAScript's in schema tools, Rust's in pydantic,
# Python's in the tokenizer) counts as no white space, or a line break (those of
# str.splitlines). The tokenizer makes a token of every such character, so a stop
# string that has one has a token.
HAS_A_TOKEN = (
    "[^\\u0009-\\u000d\\u0020\\u001c-\\u001f\\u0085\\u00a0\\u1680"
    "\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
    "|[\\u000a-\\u000d\\u001c-\\u001e\\u0085\\u2028\\u2029]"
)
StopString = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_STOP_CHARS,
        pattern=HAS_A_TOKEN,
        description="Has a character other than white space, or a line break.",
    ),
]


class GenerateInput(_Strict):
    """One prompt to continue."""

    truncate: int | None = truncate_field(
        "Continue only the prompt's last this many tokens: a prompt of any length, up to the body limit, "
        "is then accepted, and only its end is read (as /predict_next's `truncate`); `truncated` says "
        "whether any token was left out."
    )
    prompt: str = Field(
        max_length=SETTINGS.max_body_bytes,
        description=(
            f"Raw text to continue; may be empty. At most {SETTINGS.max_text_chars} characters and "
            f"{SETTINGS.max_text_tokens} tokens, else 400, unless `truncate` is given."
        ),
        examples=["the sun"],
    )
    max_new_tokens: int = Field(
        default=20, ge=1, le=SETTINGS.max_new_tokens, description="Most tokens to generate.", examples=[20]
    )
    temperature: float = Field(
        default=1.0,
        ge=0.0,
        le=5.0,
        allow_inf_nan=False,
        description="Softmax temperature; 0 picks the most likely word every step (greedy).",
        examples=[0.8],
    )
    top_k: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Sample among the k most likely words; 0 turns it off.",
        examples=[40],
    )
    top_p: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Nucleus sampling: the smallest set of words whose probability reaches top_p.",
        examples=[0.95],
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        description="Random seed: the same input and seed give the same text, alone or batched.",
        examples=[7],
    )
    stop: list[StopString] = Field(
        default_factory=list,
        max_length=MAX_STOP_STRINGS,
        description=(
            "Stop after generating any of these strings (matched as whole tokens; included in the output). "
            'A line break is a token: `["\\n"]` stops at the end of the line.'
        ),
        examples=[["."]],
    )

    _limits = field_validator("prompt")(within_limits_unless_truncated)

    def request(self) -> GenerationRequest:
        return GenerationRequest(
            self.prompt,
            self.max_new_tokens,
            self.temperature,
            self.top_k,
            self.top_p,
            self.seed,
            tuple(self.stop),
            truncate=self.truncate,
        )


class GenerateOutput(BaseModel):
    text: str = Field(
        description="The generated continuation, detokenized; line breaks are part of it.",
        examples=["rises in the east."],
    )
    tokens: list[str] = Field(description="The generated tokens.", examples=[["rises", "in", "the", "east", "."]])
    finish_reason: Literal["length", "stop", "eos"] = Field(
        description=(
            "length: max_new_tokens reached; stop: a stop string was generated; eos: the model ended the text "
            "(at the end of a whole text, never at a line break)."
        ),
        examples=["stop"],
    )
    prompt_tokens: int = Field(description="Tokens in the prompt.", examples=[2])
    unknown: int = Field(description="Prompt tokens outside the vocabulary (read as <unk>).", examples=[0])
    truncated: bool = Field(
        default=False, description="Prompt tokens before the last `truncate` ones were left out.", examples=[False]
    )


PREDICT_EXAMPLE = [
    NextWordInput(text="the sun rises in the", top_k=5),
    NextWordInput(text="the game was rel", top_k=3, complete=True),
    NextWordInput(text="", top_k=3),
]
GENERATE_EXAMPLE = [
    GenerateInput(prompt="the sun", max_new_tokens=20, temperature=0.8, top_k=40, top_p=0.95, seed=7, stop=["."])
]

NextWordBatch = Annotated[
    list[NextWordInput],
    Field(
        min_length=1,
        max_length=SETTINGS.max_inputs,
        description="Prefixes whose next word is wanted; answers come back in the same order.",
        examples=[PREDICT_EXAMPLE],
    ),
]
GenerateBatch = Annotated[
    list[GenerateInput],
    Field(
        min_length=1,
        max_length=SETTINGS.max_inputs,
        description="Prompts to continue; answers come back in the same order.",
        examples=[GENERATE_EXAMPLE],
    ),
]

GenerateStreamBatch = Annotated[
    list[GenerateInput],
    Field(
        min_length=1,
        max_length=1,
        description="Exactly one prompt, whose tokens are streamed as Server-Sent Events.",
        examples=[GENERATE_EXAMPLE],
    ),
]


class _Request(bentoml.IODescriptor):
    """A request body: ``{"inputs": [...]}`` and nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True)


class PredictRequest(_Request):
    inputs: NextWordBatch


class GenerateRequest(_Request):
    inputs: GenerateBatch


class GenerateStreamRequest(_Request):
    inputs: GenerateStreamBatch


# Return types of the endpoints. Naming the media type spares BentoML 1.4.39
# from building the output's JSON schema again on every response (docs/benchmarks.md).
NextWordResults = Annotated[list[NextWordOutput], ContentType("application/json")]
# Builds a whole batch of the engine's answers (``NextWords`` dicts) and dumps it, each in one pydantic-core call.
NEXT_WORD_OUTPUTS = TypeAdapter(list[NextWordOutput])
GenerateResults = Annotated[list[GenerateOutput], ContentType("application/json")]
GENERATE_OUTPUTS = TypeAdapter(list[GenerateOutput])


def generate_output(generation: Generation) -> GenerateOutput:
    """The engine's finished row as the API answers it."""
    return GenerateOutput(
        text=generation.text,
        tokens=generation.tokens,
        finish_reason=generation.finish_reason.value,
        prompt_tokens=generation.prompt_tokens,
        unknown=generation.unknown,
        truncated=generation.truncated,
    )
