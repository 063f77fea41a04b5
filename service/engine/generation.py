"""Generation's job, split into steps so that a scheduler (``service.engine.scheduler``) can add
and retire rows between any two of them::

    batch = predictor.start(rows)       # prefill the prompts: a DecodeBatch
    batch.extend(predictor.start(more)) # rows may join at any step
    while batch.rows:
        emitted = predictor.step(batch) # one token for every row; finished rows leave
    predictor.output(row)               # a finished row as a Generation

A line break is text: prompts keep theirs, and generation emits and
continues through them. A text ends (``finish_reason: "eos"``) only where
the model chooses ``<eot>``, which training puts at the end of each corpus
text, not of each line (``training.data``). With a ``StateCache``, every
prompt resumes from its longest cached prefix and only the rest of it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from service.engine.loaded import LoadedModel
from service.engine.request import Encoded, Row
from service.engine.sampling import SamplingBatch, choose_next, draw_uniforms, row_generator
from service.engine.types import FinishReason, Generation, GenerationRequest, TokenLogprob


@dataclass
class DecodeBatch:
    """The rows being decoded, with what the next step needs of each, in row order."""

    rows: list[Row]
    hidden: Tensor  # (A, H) top-layer output after each row's last fed token
    state: Tensor  # (S, L, A, H)
    params: SamplingBatch

    def keep(self, indices: list[int]) -> None:
        """Keep only the rows at these positions (in order)."""
        if len(indices) == len(self.rows):
            return
        index = torch.tensor(indices, dtype=torch.long, device=self.hidden.device)
        self.rows = [self.rows[i] for i in indices]
        self.hidden, self.state = self.hidden.index_select(0, index), self.state.index_select(2, index)
        self.params = self.params.select(index)

    def extend(self, other: DecodeBatch) -> None:
        """Add the rows of ``other`` after these."""
        self.rows += other.rows
        self.hidden = torch.cat([self.hidden, other.hidden])
        self.state = torch.cat([self.state, other.state], dim=2)
        self.params = self.params.concat(other.params)


class GenerationJob(LoadedModel):
    """Generation, a step at a time."""

    def new_row(self, item: GenerationRequest) -> Row:
        """A generation request, tokenized, ready for ``start``."""
        truncated = False
        if item.prompt_ids is not None:
            ids = list(item.prompt_ids)
            prompt = Encoded(ids, len(ids), ids.count(self.vocab.unk_id))
        elif item.truncate is not None:  # the prompt's last tokens, reading only its end
            tokens, _, truncated = self.tokenizer.tokenize_end(item.prompt, item.truncate)
            prompt = self._encode_tokens(tokens)
        else:
            prompt = self.encode(item.prompt)
        return Row(
            input=item,
            prompt=prompt,
            stops=[self.vocab.encode(self.tokenizer.tokenize(stop)) for stop in item.stop],
            generator=row_generator(item.seed),
            truncated=truncated,
        )

    @torch.inference_mode()
    def start(self, rows: list[Row]) -> DecodeBatch:
        """Prefill the rows' prompts: a batch ready for its first decode step."""
        prompts = [row.prompt.ids for row in rows]
        hidden, state = self.scorer.prefill(*self._resume(prompts))
        if self.cache is not None:
            self.cache.store(prompts, state, hidden)
        params = SamplingBatch(
            temperature=torch.tensor([row.input.temperature for row in rows], device=self.device),
            top_k=torch.tensor([row.input.top_k for row in rows], dtype=torch.long, device=self.device),
            top_p=torch.tensor([row.input.top_p for row in rows], device=self.device),
        )
        return DecodeBatch(rows, hidden, state, params)

    @torch.inference_mode()
    def step(self, batch: DecodeBatch) -> list[tuple[Row, int | None]]:
        """Choose one token for every row; finished rows leave the batch.

        Returns each row with its new token id, or None when the row ended
        the text (``<eot>`` is not part of the output).
        """
        # The model alone: the recency cache would favour the text's own samples (models.recency).
        logits = self.model.decode(batch.hidden, batch.state, False).float()  # (A, V), a fresh tensor
        logits[:, self.vocab.unk_id] = float("-inf")  # never generated; one column, not a (A, V) pass
        if self.blocklist.tensor is not None:
            logits.index_fill_(1, self.blocklist.tensor, float("-inf"))  # nor is a blocked word
        uniforms = draw_uniforms([row.generator for row in batch.rows], self.device)
        chosen = choose_next(logits, batch.params, uniforms).tolist()
        if any(row.input.logprobs is not None for row in batch.rows):
            self._record_logprobs(batch, chosen)
        emitted = [(row, self._append(row, token)) for row, token in zip(batch.rows, chosen, strict=True)]
        running = [i for i, row in enumerate(batch.rows) if row.finish_reason is None]
        batch.keep(running)
        if running:
            step = torch.tensor([chosen[i] for i in running], dtype=torch.long, device=self.device).unsqueeze(1)
            out, batch.state = self.model.encode(step, batch.state)  # (A, 1, H)
            batch.hidden = out[:, 0]
        return emitted

    def _append(self, row: Row, token: int) -> int | None:
        if token == self.vocab.end_id:
            row.finish_reason = FinishReason.EOS
            return None
        row.ids.append(token)
        matched = [stop for stop in row.stops if stop and row.ids[-len(stop) :] == stop]
        if matched:
            row.finish_reason = FinishReason.STOP
            row.stop_tokens = len(matched[0])
        elif row.tokens_left <= 0:
            row.finish_reason = FinishReason.LENGTH
        return token

    def _record_logprobs(self, batch: DecodeBatch, chosen: list[int]) -> None:
        """Each asking row's chosen token, its log-probability and the likeliest tokens, before they step."""
        asking = [i for i, row in enumerate(batch.rows) if row.input.logprobs is not None]
        index = torch.tensor(asking, dtype=torch.long, device=self.device)
        logp = self.log_probs(batch.hidden.index_select(0, index), batch.state.index_select(2, index))
        ids = torch.tensor([chosen[i] for i in asking], dtype=torch.long, device=self.device)
        picked = logp.gather(1, ids.unsqueeze(1))[:, 0].tolist()
        most = max(batch.rows[i].input.logprobs or 0 for i in asking)
        # The end of the text gets an entry too (it ends the row without a token): a scoring client
        # counts one entry per step it asked for.
        for j, pairs in enumerate(self._likeliest(logp, most)):
            row = batch.rows[asking[j]]
            row.logprobs.append(TokenLogprob(chosen[asking[j]], picked[j], pairs[: row.input.logprobs or 0]))

    def output(self, row: Row) -> Generation:
        """A finished row's continuation."""
        assert row.finish_reason is not None, "output() is for finished rows"
        words = self.vocab.decode(row.ids)
        return Generation(
            text=self.tokenizer.detokenize(words, after=row.input.prompt),
            tokens=words,
            finish_reason=row.finish_reason,
            prompt_tokens=row.prompt.tokens,
            unknown=row.prompt.unknown,
            ids=tuple(row.ids),
            stop_tokens=row.stop_tokens,
            logprobs=tuple(row.logprobs) if row.input.logprobs is not None else None,
            truncated=row.truncated,
        )

    def generate(self, inputs: list[GenerationRequest]) -> list[Generation]:
        """Decode a whole batch to the end (request-level batching, in process)."""
        rows = [self.new_row(item) for item in inputs]
        batch = self.start(rows)
        while batch.rows:
            self.step(batch)
        return [self.output(row) for row in rows]
