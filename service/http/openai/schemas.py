"""OpenAI's legacy completions request, validated at the edge, with the same bounds as our own routes.

Fields follow OpenAI's API reference for ``POST /v1/completions``. What
nextword cannot honour is refused with a 400 naming the field instead of
being ignored: ``best_of`` over 1, a ``suffix``, a non-empty
``logit_bias``, non-zero penalties. Unknown fields are refused as OpenAI
refuses them (the ``openai`` client sends only the fields it is given, and
``extra_body`` for the rest).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from service.http.schemas import MAX_STOP_STRINGS, StopString, check_text_limits, check_token_count
from service.settings import SETTINGS

MAX_LOGPROBS = 5  # OpenAI's own bound on the alternatives per token
DEFAULT_MAX_TOKENS = 16  # OpenAI's default

TOKEN_ID_MARK = "x-token-id"  # the published contract bounds these by the served model's vocabulary
Text = Annotated[str, Field(max_length=SETTINGS.max_text_chars), AfterValidator(check_token_count)]
TokenId = Annotated[int, Field(ge=0, json_schema_extra={TOKEN_ID_MARK: True})]
TokenIds = Annotated[
    list[TokenId],
    Field(min_length=1, max_length=SETTINGS.max_text_tokens),
]
# A prompt's texts are bounded by the body only here: ``CompletionRequest`` holds them to the text
# limits unless ``truncate_prompt_tokens`` says to read only their end.
PromptText = Annotated[str, Field(max_length=SETTINGS.max_body_bytes)]
Prompt = (
    PromptText
    | Annotated[list[PromptText], Field(min_length=1, max_length=SETTINGS.max_inputs)]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1, max_length=SETTINGS.max_inputs)]
)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool | None = Field(
        default=None, description="Send one more chunk before [DONE], with no choices and the request's usage."
    )


class CompletionRequest(BaseModel):
    """``POST /v1/completions``: continue each prompt, and (with ``echo`` and ``logprobs``) score it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(
        max_length=256, description="The served model: its store tag, or its name.", examples=["nextword"]
    )
    truncate_prompt_tokens: int | None = Field(
        default=None,
        ge=1,
        le=SETTINGS.max_text_tokens,
        description=(
            "Read only each prompt's last this many tokens (vLLM's field): a text prompt of any length, up "
            "to the body limit, is then accepted. The kept tokens are read from a fresh state, as if the "
            "text began there; the echo, the prompt's logprobs and `usage.prompt_tokens` are those of the "
            "kept tokens, and each choice's `truncated` says whether any token was left out."
        ),
        examples=[128],
    )
    prompt: Prompt = Field(
        description=(
            "A text, a list of texts, a list of token ids, or a list of such lists (ids from /tokenize). "
            "A text is read as every text is, after a leading line break; a list of ids is run as given, "
            f"from the model's zero state. A text has at most {SETTINGS.max_text_chars} characters and "
            f"{SETTINGS.max_text_tokens} tokens, unless `truncate_prompt_tokens` is given."
        ),
        examples=["the sun rises in the"],
    )
    max_tokens: int | None = Field(
        default=DEFAULT_MAX_TOKENS,
        ge=0,
        le=SETTINGS.max_new_tokens,
        description="Most tokens to generate for each choice; 0 with echo scores the prompt alone.",
        examples=[16],
    )
    temperature: float | None = Field(
        default=1.0, ge=0.0, le=2.0, allow_inf_nan=False, description="0 is greedy.", examples=[0.8]
    )
    top_p: float | None = Field(
        default=1.0, ge=0.0, le=1.0, allow_inf_nan=False, description="Nucleus sampling; 0 is greedy.", examples=[0.95]
    )
    n: int | None = Field(
        default=1,
        ge=1,
        le=SETTINGS.max_inputs,
        description="Choices per prompt; prompts times n is at most NEXTWORD_MAX_INPUTS.",
        examples=[1],
    )
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)] | None = Field(
        default=None,
        description="End a choice where it generates one of these (as whole tokens); the stop is not in the text.",
        examples=[["\n"]],
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        description="Choice i of a prompt samples as /generate does with seed + i.",
        examples=[7],
    )
    stream: bool | None = Field(default=False, description="Server-Sent Events of completion chunks, then [DONE].")
    stream_options: StreamOptions | None = None
    echo: bool | None = Field(default=False, description="Put the prompt before each choice's text.")
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_LOGPROBS,
        description=(
            "Each token's log-probability and this many likeliest alternatives, from /predict_next's "
            "distribution; with echo, the prompt's tokens too."
        ),
        examples=[1],
    )
    user: str | None = Field(default=None, max_length=256, description="Accepted and not used.")
    # Fields nextword cannot honour: their one accepted value is in the schema; any other is a 400 naming them.
    best_of: int | None = Field(
        default=None,
        description="Only 1: nextword does not rank candidates.",
        json_schema_extra={"minimum": 1, "maximum": 1},
    )
    suffix: str | None = Field(
        default=None, description="Not supported: only null or empty.", json_schema_extra={"maxLength": 0}
    )
    logit_bias: dict[str, int] | None = Field(
        default=None, description="Not supported: only null or {}.", json_schema_extra={"maxProperties": 0}
    )
    frequency_penalty: float | None = Field(
        default=None, description="Not supported: only null or 0.", json_schema_extra={"minimum": 0, "maximum": 0}
    )
    presence_penalty: float | None = Field(
        default=None, description="Not supported: only null or 0.", json_schema_extra={"minimum": 0, "maximum": 0}
    )

    @field_validator("prompt")
    @classmethod
    def _within_limits_unless_truncated(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("truncate_prompt_tokens") is None:
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    check_text_limits(text)
        return value

    @field_validator("best_of")
    @classmethod
    def _one_candidate(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("best_of other than 1 is not supported")
        return value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix is not supported (the model only continues text)")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value:
            raise ValueError("logit_bias is not supported")
        return value

    @field_validator("frequency_penalty", "presence_penalty")
    @classmethod
    def _no_penalty(cls, value: float | None) -> float | None:
        if value:
            raise ValueError("penalties are not supported: only 0")
        return value

    def prompts(self) -> list[str | list[int]]:
        """The prompt as a list: each a text or a list of ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if self.prompt and isinstance(self.prompt[0], int):
            return [list(self.prompt)]  # type: ignore[arg-type]
        return list(self.prompt)  # type: ignore[arg-type]

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class TokenizeRequest(BaseModel):
    """``POST /tokenize``, as vLLM's server takes it (lm-evaluation-harness's remote tokenizer sends it)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: Text = Field(description="The text to tokenize.", examples=["the sun rises"])
    add_special_tokens: bool = Field(
        default=True, description="Put the leading line break first, as the service does before every text."
    )
    model: str | None = Field(default=None, max_length=256, description="Accepted and not used.")


class DetokenizeRequest(BaseModel):
    """``POST /detokenize``: token ids back to text."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tokens: list[TokenId] = Field(
        max_length=SETTINGS.max_text_tokens, description="Token ids, as /tokenize answers them.", examples=[[5, 9]]
    )
    model: str | None = Field(default=None, max_length=256, description="Accepted and not used.")
