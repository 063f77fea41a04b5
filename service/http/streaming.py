"""Server-Sent Events for /generate_stream: one event per token, straight from the batched engine.

Usage::

    job = engine.stream([item])  # before the response starts, so 429 is still possible
    return StreamingResponse(sse_events(job, engine), media_type="text/event-stream")

Each event is one ``data: <json>`` line and a blank line::

    data: {"token": "rises", "text": " rises"}       one per generated token
    data: {"finish_reason": "length", "text": "rises in the east", "tokens": [...],
           "prompt_tokens": 2, "generated_tokens": 4, "unknown": 0}   the last, a GenerateOutput plus a count

A token's ``text`` is what it adds to the output, so the pieces add up to
the final ``text``, which is the /generate answer for the same input and
seed: what follows the prompt as a person reads it (``Tokenizer.detokenizer``).
When the client disconnects, Starlette stops this generator; its
``finally`` cancels the job, and the row leaves the batch at the next step.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from service.engine.engine import Engine, Job
from service.http.schemas import generate_output


def event(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def sse_events(job: Job, engine: Engine) -> AsyncIterator[str]:
    """The job's tokens as SSE events, then one final event; frees the row however the stream ends."""
    (row,) = job.rows
    joiner = engine.tokenizer.detokenizer(after=row.input.prompt)
    words = engine.vocab.words
    try:
        async for _row, token in job.tokens():
            if token is not None:
                yield event({"token": words[token], "text": joiner.piece(words[token])})
        final = generate_output(engine.output(row)).model_dump()
        yield event(final | {"generated_tokens": len(row.ids)})
    except Exception as error:  # the engine failed: say so in the stream, whose status is already sent
        yield event({"error": f"generation failed: {type(error).__name__}"})
    finally:
        job.cancel()
