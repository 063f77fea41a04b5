"""``POST /v1/completions`` on the engine: prompts in, OpenAI's completion objects (or chunks) out.

The same engine as /generate runs the choices, with the same sampling code
and seeds (choice i of a prompt samples as /generate with ``seed + i``), and
continuations join their prompts as /generate's do. Log-probabilities are
/predict_next's distribution, the recency cache included, so ``echo`` with
``logprobs`` scores a text as ``training.fresh_texts`` does; sampling
leaves the cache out, as /generate's does.

Tokens are pieces of the text: each with the white space before it, so a
choice's ``tokens`` join into its ``text`` (OpenAI's convention), and
``text_offset`` says where each starts. A text prompt is read after the
line break that starts every text, so its first token has a
log-probability (that of starting a text with it); a prompt of ids is run
as given, and its first id, which nothing precedes, has null. A choice
the model ends (its end of text, finish_reason ``stop``) has one more
entry, an empty token with that end's log-probability: a scoring client
(lm-evaluation-harness) counts one entry per step it asked for.

Usage::

    plan = CompletionPlan.of(request, served)          # 400/404 as CompletionError
    return await plan.answer()                          # a JSON response, or an SSE stream
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.responses import Response, StreamingResponse

from models.tokenizer import Detokenizer
from service.engine.engine import Engine, Row
from service.engine.types import FinishReason, Generation, GenerationRequest, TokenLogprob
from service.http.openai.schemas import DEFAULT_MAX_TOKENS, CompletionRequest
from service.settings import SETTINGS

SEED_SPACE = 2**63  # choice i's seed wraps within /generate's bound


class CompletionError(Exception):
    """A request nextword refuses: its status, and the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Served:
    """What the /v1 routes serve: the worker's engine and the model's card."""

    engine: Engine
    model_id: str  # the store tag
    names: frozenset[str]  # what a request's ``model`` may say
    created: int  # the model's creation time, Unix seconds
    metadata: dict[str, Any]

    @classmethod
    def of(cls, engine: Engine, created: datetime, asked_as: str) -> Served:
        """The engine's model, named by its tag, its name, and the tag it was asked for (``asked_as``)."""
        tag = engine.bundle.tag
        names = frozenset({str(tag), tag.name, asked_as})
        return cls(engine, str(tag), names, int(created.timestamp()), engine.bundle.metadata)


@dataclass
class Prompted:
    """One prompt as the model runs it and as the answer shows it."""

    text: str  # what the continuation joins; the echo
    ids: list[int]  # what the model runs, from the zero state
    shown: int  # ids[shown:] are the prompt's own tokens (a text's leading line break is not)
    pieces: list[str]  # the shown tokens as pieces of ``text``
    offsets: list[int]  # where each piece starts in ``text``
    words: list[str]  # the shown tokens as the vocabulary spells them
    from_ids: bool
    source: str  # a text prompt as the request gave it, whose end the engine reads; else ``text``
    truncated: bool = False  # tokens before the last ``truncate_prompt_tokens`` were left out


@dataclass
class LogprobLists:
    """A choice's ``logprobs`` object, built a token at a time."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def add(self, piece: str, offset: int, scored: TokenLogprob | None, keys: Detokenizer, words: list[str]) -> None:
        """One token: ``keys`` is the joiner as it stood before it, to spell the alternatives."""
        self.tokens.append(piece)
        self.text_offset.append(offset)
        if scored is None:
            self.token_logprobs.append(None)
            self.top_logprobs.append(None)
            return
        self.token_logprobs.append(scored.logprob)
        top = {copy.copy(keys).piece(words[i]): value for i, value in scored.top}
        top.setdefault(piece, scored.logprob)  # OpenAI: the chosen token is always among them
        self.top_logprobs.append(top)

    def as_dict(self) -> dict[str, list]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


@dataclass
class CompletionPlan:
    """A valid request, read against the served model: its prompts, choices and engine requests."""

    request: CompletionRequest
    served: Served
    prompts: list[Prompted]
    max_tokens: int
    choices_per_prompt: int

    @classmethod
    def of(cls, request: CompletionRequest, served: Served) -> CompletionPlan:
        if request.model not in served.names:
            message = f"model {request.model!r} is not served here; GET /v1/models lists {served.model_id!r}"
            raise CompletionError(404, message, "model", "model_not_found")
        prompts = request.prompts()
        n = request.n or 1
        if len(prompts) * n > SETTINGS.max_inputs:
            message = (
                f"{len(prompts)} prompts times n={n} is more than the {SETTINGS.max_inputs} choices a request may ask"
            )
            raise CompletionError(400, message, "n", "too_many_choices")
        max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
        vocabulary = len(served.engine.vocab)
        for prompt in prompts:
            if isinstance(prompt, list) and max(prompt) >= vocabulary:
                message = f"token id {max(prompt)} is outside the vocabulary of {vocabulary} tokens"
                raise CompletionError(400, message, "prompt", "invalid_token_id")
        read = [read_prompt(served.engine, p, request.truncate_prompt_tokens) for p in prompts]
        return cls(request, served, read, max_tokens, n)

    # -- the engine's work --------------------------------------------------------------------

    def generation_requests(self) -> list[GenerationRequest]:
        """Every choice, prompt by prompt, as /generate would run it."""
        request = self.request
        temperature = 1.0 if request.temperature is None else request.temperature
        top_p = 1.0 if request.top_p is None else request.top_p
        if top_p == 0.0:  # the smallest nucleus: the likeliest token
            temperature, top_p = 0.0, 1.0
        out = []
        for prompt in self.prompts:
            for choice in range(self.choices_per_prompt):
                seed = None if request.seed is None else (request.seed + choice) % SEED_SPACE
                out.append(
                    GenerationRequest(
                        prompt=prompt.source,
                        max_new_tokens=self.max_tokens,
                        temperature=temperature,
                        top_p=top_p,
                        seed=seed,
                        stop=request.stops(),
                        prompt_ids=tuple(prompt.ids) if prompt.from_ids else None,
                        logprobs=request.logprobs,
                        truncate=None if prompt.from_ids else request.truncate_prompt_tokens,
                    )
                )
        return out

    async def scored_prompts(self) -> list[list[TokenLogprob | None]] | None:
        """The prompts' own log-probabilities, when the answer echoes them with logprobs."""
        if not self.request.echo or self.request.logprobs is None:
            return None
        return await self.served.engine.score([prompt.ids for prompt in self.prompts], self.request.logprobs)

    async def answer(self) -> Response:
        scored = await self.scored_prompts()
        if self.request.stream:
            job = None
            if self.max_tokens:
                job = self.served.engine.stream(self.generation_requests())  # may raise Overloaded
            return StreamingResponse(self.chunks(scored, job), media_type="text/event-stream")
        generations: list[Generation | None] = [None] * (len(self.prompts) * self.choices_per_prompt)
        if self.max_tokens:
            generations = list(await self.served.engine.generate(self.generation_requests()))
        return Response(json.dumps(self.completion(scored, generations)), media_type="application/json")

    # -- the answer ---------------------------------------------------------------------------

    def envelope(self) -> dict[str, Any]:
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.served.model_id,
        }

    def completion(
        self, scored: list[list[TokenLogprob | None]] | None, generations: list[Generation | None]
    ) -> dict[str, Any]:
        choices = []
        completion_tokens = 0
        for index, generation in enumerate(generations):
            prompt = self.prompts[index // self.choices_per_prompt]
            prompt_scores = scored[index // self.choices_per_prompt] if scored is not None else None
            text, logprobs = self.echoed(prompt, prompt_scores)
            finish_reason = "length"
            if generation is not None:
                completion_tokens += len(generation.ids)
                kept = len(generation.ids) - generation.stop_tokens
                joiner = self.engine.tokenizer.detokenizer(after=prompt.text)
                for position, token in enumerate(generation.ids[:kept]):
                    keys = copy.copy(joiner)
                    piece = joiner.piece(self.words[token])
                    if logprobs is not None and generation.logprobs is not None:
                        logprobs.add(piece, len(text), generation.logprobs[position], keys, self.words)
                    text += piece
                if logprobs is not None and generation.logprobs and generation.finish_reason is FinishReason.EOS:
                    logprobs.add("", len(text), generation.logprobs[-1], joiner, self.words)  # the end: no text
                finish_reason = "length" if generation.finish_reason is FinishReason.LENGTH else "stop"
            choice = {
                "index": index,
                "text": text,
                "finish_reason": finish_reason,
                "logprobs": logprobs.as_dict() if logprobs is not None else None,
            }
            choices.append(choice | self.truncation(prompt))
        return self.envelope() | {"choices": choices, "usage": self.usage(completion_tokens)}

    def echoed(self, prompt: Prompted, scores: list[TokenLogprob | None] | None) -> tuple[str, LogprobLists | None]:
        """A choice's start: the prompt when echoing it (with its tokens' logprobs), else nothing."""
        logprobs = LogprobLists() if self.request.logprobs is not None else None
        if not self.request.echo:
            return "", logprobs
        if logprobs is not None and scores is not None:
            keys = self.engine.tokenizer.detokenizer()
            for position, (piece, offset) in enumerate(zip(prompt.pieces, prompt.offsets, strict=True)):
                logprobs.add(piece, offset, scores[prompt.shown + position], keys, self.words)
                keys.piece(prompt.words[position])
        return prompt.text, logprobs

    def truncation(self, prompt: Prompted) -> dict[str, bool]:
        """A choice's ``truncated``, where the request asked to read only its prompts' ends."""
        return {} if self.request.truncate_prompt_tokens is None else {"truncated": prompt.truncated}

    def usage(self, completion_tokens: int) -> dict[str, int]:
        prompt_tokens = sum(len(prompt.ids) - prompt.shown for prompt in self.prompts)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    async def chunks(self, scored: list[list[TokenLogprob | None]] | None, job: Any) -> AsyncIterator[str]:
        """The stream: each choice's echo, then a chunk per token, a last chunk per choice, usage, [DONE].

        A token that may begin a stop sequence is held until the sequence is
        ruled out, so that a stop never reaches the client.
        """
        envelope = self.envelope()
        choices = [
            StreamedChoice(index, self, scored[index // self.choices_per_prompt] if scored is not None else None)
            for index in range(len(self.prompts) * self.choices_per_prompt)
        ]
        completion_tokens = 0
        try:
            for choice in choices:
                if self.request.echo:
                    yield sse(envelope | {"choices": [choice.echo_chunk()]})
            if job is None:
                for choice in choices:
                    yield sse(envelope | {"choices": [choice.last_chunk("length")]})
            else:
                by_row = {id(row): choice for row, choice in zip(job.rows, choices, strict=True)}
                async for row, token in job.tokens():
                    choice = by_row[id(row)]
                    if token is not None:
                        completion_tokens += 1
                    for part in choice.take(row, token):
                        yield sse(envelope | {"choices": [part]})
            if self.request.stream_options is not None and self.request.stream_options.include_usage:
                yield sse(envelope | {"choices": [], "usage": self.usage(completion_tokens)})
        except Exception as error:  # the engine failed after the 200 went out: say so in the stream
            body = {"message": f"generation failed: {type(error).__name__}", "type": "server_error"}
            yield sse({"error": body | {"param": None, "code": None}})
        finally:
            if job is not None:
                job.cancel()
        yield "data: [DONE]\n\n"

    @property
    def engine(self) -> Engine:
        return self.served.engine

    @property
    def words(self) -> list[str]:
        return self.served.engine.vocab.words


class StreamedChoice:
    """One choice of a stream: its joiner, the tokens it holds back, and its text's length so far."""

    def __init__(self, index: int, plan: CompletionPlan, scores: list[TokenLogprob | None] | None) -> None:
        self.index = index
        self.plan = plan
        self.prompt = plan.prompts[index // plan.choices_per_prompt]
        self.scores = scores
        self.joiner = plan.engine.tokenizer.detokenizer(after=self.prompt.text)
        self.length = len(self.prompt.text) if plan.request.echo else 0
        self.delivered = 0  # tokens received from the engine
        self.held: list[tuple[int, int]] = []  # (token id, its position) that may begin a stop
        self.ended = False

    def echo_chunk(self) -> dict[str, Any]:
        text, logprobs = self.plan.echoed(self.prompt, self.scores)
        return self.chunk(text, logprobs)

    def chunk(self, text: str, logprobs: LogprobLists | None, finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": text,
            "finish_reason": finish_reason,
            "logprobs": logprobs.as_dict() if logprobs is not None else None,
        }

    def last_chunk(self, finish_reason: str) -> dict[str, Any]:
        self.ended = True
        logprobs = LogprobLists() if self.plan.request.logprobs is not None else None
        return self.chunk("", logprobs, finish_reason) | self.plan.truncation(self.prompt)

    def take(self, row: Row, token: int | None) -> list[dict[str, Any]]:
        """The chunks a token from the engine releases (None: the row ended the text)."""
        out: list[dict[str, Any]] = []
        if token is not None:
            self.held.append((token, self.delivered))
            self.delivered += 1
        finish_reason = row.finish_reason  # read before the count: once set, no token follows it
        ended = token is None or (finish_reason is not None and self.delivered == len(row.ids))
        if ended and finish_reason is FinishReason.STOP:
            self.held = self.held[: len(self.held) - row.stop_tokens]
        keep = 0 if ended else self.may_begin_a_stop(row)
        release, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep :]
        for token_id, position in release:
            out.append(self.token_chunk(row, token_id, position))
        if token is None and self.plan.request.logprobs is not None and len(row.logprobs) > self.delivered:
            logprobs = LogprobLists()  # the end of the text: an entry, no text
            logprobs.add("", self.length, row.logprobs[self.delivered], copy.copy(self.joiner), self.plan.words)
            out.append(self.chunk("", logprobs))
        if ended and not self.ended:
            out.append(self.last_chunk("length" if finish_reason is FinishReason.LENGTH else "stop"))
        return out

    def token_chunk(self, row: Row, token: int, position: int) -> dict[str, Any]:
        keys = copy.copy(self.joiner)
        piece = self.joiner.piece(self.plan.words[token])
        logprobs = None
        if self.plan.request.logprobs is not None:
            logprobs = LogprobLists()
            logprobs.add(piece, self.length, row.logprobs[position], keys, self.plan.words)
        self.length += len(piece)
        return self.chunk(piece, logprobs)

    def may_begin_a_stop(self, row: Row) -> int:
        """How many of the held tokens, at the end, are the start of a stop sequence."""
        held = [token for token, _ in self.held]
        longest = 0
        for stop in row.stops:
            for size in range(min(len(stop) - 1, len(held)), longest, -1):
                if held[-size:] == stop[:size]:
                    longest = size
                    break
        return longest


def read_prompt(engine: Engine, prompt: str | list[int], truncate: int | None = None) -> Prompted:
    """A prompt as the model runs it (a text after its leading line break; ids as given) and as it is
    shown; with ``truncate``, only its last that many tokens."""
    tokenizer = engine.tokenizer
    if isinstance(prompt, list):
        truncated = truncate is not None and len(prompt) > truncate
        ids = prompt[-truncate:] if truncate is not None else prompt
        words = engine.vocab.decode(ids)
        joiner = tokenizer.detokenizer()
        pieces = [joiner.piece(word) for word in words]
        offsets = [sum(len(piece) for piece in pieces[:i]) for i in range(len(pieces))]
        text = "".join(pieces)
        return Prompted(text, ids, 0, pieces, offsets, words, True, text, truncated)
    if truncate is None:
        words, start, truncated = tokenizer.tokenize(prompt), 0, False
        spans = tokenizer.spans(prompt)
    else:  # the last tokens, reading only the text's end; the echo starts where the first kept one does
        words, read_from, truncated = tokenizer.tokenize_end(prompt, truncate)
        spans = tokenizer.spans(prompt[read_from:])
        spans = spans[len(spans) - len(words) :]
        start = read_from + (spans[0][0] if spans else len(prompt) - read_from)
        spans = [(begin + read_from - start, end + read_from - start) for begin, end in spans]
    text = prompt[start:]
    starts = [0, *(end for _, end in spans[:-1])][: len(spans)]  # each piece takes the white space before it
    pieces = [text[begin:end] for begin, (_, end) in zip(starts, spans, strict=True)]
    ids = [engine.vocab.line_break_id, *engine.vocab.encode(words)]
    return Prompted(text, ids, 1, pieces, starts, words, False, prompt, truncated)


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
