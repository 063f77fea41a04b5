"""The engine's own types: what the edge hands it, what it hands back, its policies and its refusals.

The HTTP edge (``service.http``) turns its pydantic request models into
these and these into its responses, so the engine never sees the wire format
and can be driven in process (benchmarks, tests) with plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict


class BatchingPolicy(StrEnum):
    """When queued /generate rows may join the running batch (``NEXTWORD_GENERATE_BATCHING``)."""

    CONTINUOUS = "continuous"  # at every step: a row never waits for the rows before it to end
    REQUEST = "request"  # only when nothing runs: a batch runs until its last row ends
    OFF = "off"  # one request at a time


class FinishReason(StrEnum):
    """Why a generated row ended."""

    LENGTH = "length"  # it reached max_new_tokens
    STOP = "stop"  # it generated one of its stop sequences
    EOS = "eos"  # the model chose <eot>, the end of a whole text


@dataclass(frozen=True, slots=True)
class NextWordQuery:
    """One text whose next words are wanted."""

    text: str  # the raw prefix; empty asks for the first word of a text
    top_k: int  # how many words to answer
    complete: bool = False  # read a last word not followed by white space as partly typed
    exclude: tuple[str, ...] = ()  # words never to offer in this answer, as written, any case
    truncate: int | None = None  # read only the text's last this many tokens (before the fragment)
    correct_typos: bool = True  # fill a completion's empty slots with words one slip away (models.typos)


class Prediction(TypedDict):
    """One next word as a person writes it, and its probability."""

    word: str  # as written ("-" for the token "@-@"); when completing a compound, the whole ("well-known")
    token: str  # the model's token
    joins_previous: bool  # written without a space before it (a hyphen, 's, closing punctuation)
    joins_next: bool  # the next word follows it without a space (a hyphen, an opening bracket)
    probability: float  # among the words that start with the fragment, when completing one
    correction: bool  # a completion that does not start with the fragment: one slip away from it


class NextWords(TypedDict, total=False):
    """The answer to one ``NextWordQuery``: a dict, so that the edge builds its models in one pydantic call."""

    predictions: list[Prediction]  # most probable first
    tokens: int  # tokens in the prefix (before the fragment, when completing)
    unknown: int  # prefix tokens outside the vocabulary
    fragment: str  # only when completing: the partly typed word as typed, the characters a completion replaces
    matching_words: int  # only when completing with a word model: vocabulary words that start with it
    matching_probability: float  # only when completing with a word model: their total probability
    line_break_probability: float  # only when not completing: the probability that a line break comes next
    truncated: bool  # tokens before the last ``truncate`` ones were left out


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One prompt to continue, with how to sample its continuation."""

    prompt: str  # the raw text to continue; with prompt_ids, their text (what the continuation joins)
    max_new_tokens: int  # most tokens to generate
    temperature: float = 1.0  # 0 is greedy
    top_k: int = 0  # sample among the k most likely words; 0 turns it off
    top_p: float = 1.0  # nucleus sampling
    seed: int | None = None  # the same request and seed give the same text, alone or batched
    stop: tuple[str, ...] = field(default=())  # end after generating any of these (as whole tokens)
    # The prompt as vocabulary ids, run as given from the zero state: no leading line break is
    # added, so a client that tokenized with the service's tokenizer controls every position.
    prompt_ids: tuple[int, ...] | None = None
    logprobs: int | None = None  # report each generated token's log-probability and this many alternatives
    truncate: int | None = None  # continue only the prompt's last this many tokens


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A token's log-probability where it stands, and the likeliest tokens there.

    The distribution is /predict_next's: the model with its recency cache,
    whatever the row was sampled from (sampling leaves the cache out).
    """

    id: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # (id, log-probability), likeliest first


@dataclass(frozen=True, slots=True)
class Generation:
    """A finished row: the continuation of one ``GenerationRequest``."""

    text: str  # the continuation as it reads after the prompt (``Tokenizer.detokenizer``)
    tokens: list[str]  # the generated tokens; <eot> is not among them
    finish_reason: FinishReason
    prompt_tokens: int  # tokens in the prompt
    unknown: int  # prompt tokens outside the vocabulary
    ids: tuple[int, ...] = ()  # the generated tokens' ids
    stop_tokens: int = 0  # how many of the last tokens are the stop sequence that ended it
    # One per generated token when the request asked, and one more for the end of the text (EOS).
    logprobs: tuple[TokenLogprob, ...] | None = None
    truncated: bool = False  # prompt tokens before the last ``truncate`` ones were left out


class Overloaded(Exception):
    """More work is queued than can finish within the timeout; try again after ``retry_after_s``."""

    def __init__(self, outstanding: int, asked: int, bound: int, retry_after_s: int) -> None:
        super().__init__(
            f"the server is at capacity: {outstanding} tokens are queued or running, and {asked} more "
            f"would pass the {bound} it can finish within the request timeout; retry after {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class Shed(Overloaded):
    """Admitted, but the queue moved too slowly for it to finish by its deadline; refused from the queue."""

    def __init__(self, waited_s: float, timeout_s: float, retry_after_s: int) -> None:
        Exception.__init__(
            self,
            f"the server is at capacity: after {waited_s:.1f} s in the queue this request could no longer "
            f"finish within the {timeout_s:g} s request timeout at the recent decode rate; "
            f"retry after {retry_after_s} s",
        )
        self.retry_after_s = retry_after_s
