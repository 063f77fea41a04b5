"""Batched inference: token rows in, next-word distributions and continuations out.

Inputs of different lengths share one batch by right-padding: a recurrent
model's output at step t depends only on steps <= t, so reading each row's
output at its own last real step gives exactly the answer it would get alone.
Every text starts with ``<eos>``, the token that precedes a new line in
training, so an empty prefix asks for the first word of a text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import TypeAdapter
from torch import Tensor

from models.bundle import ModelBundle
from models.scoring import compile_top_words
from service.sampling import SamplingBatch, choose_next, draw_uniforms, row_generator
from service.schemas import GenerateInput, GenerateOutput, NextWordInput, NextWordOutput

NEXT_WORD_OUTPUTS = TypeAdapter(list[NextWordOutput])


@dataclass
class Encoded:
    """A text as ids, with ``<eos>`` first."""

    ids: list[int]
    tokens: int  # without the leading <eos>
    unknown: int


@dataclass
class _Row:
    """One /generate input while it is being decoded."""

    max_new_tokens: int
    stops: list[list[int]]
    generator: torch.Generator
    ids: list[int]
    finish_reason: str | None = None


class Predictor:
    """Runs a loaded model for the service; one per worker."""

    def __init__(self, bundle: ModelBundle, device: torch.device) -> None:
        self.model = bundle.model
        self.vocab = bundle.vocab
        self.tokenizer = bundle.tokenizer
        self.device = device
        self.banned_ids = frozenset((self.vocab.unk_id, self.vocab.eos_id))  # never offered to clients
        self.max_words = len(self.vocab) - len(self.banned_ids)
        self.unk_mask = torch.zeros(len(self.vocab), dtype=torch.bool, device=device)  # (V,) True at <unk>
        self.unk_mask[self.vocab.unk_id] = True
        self.top_words = compile_top_words(self.model)

    def encode(self, text: str) -> Encoded:
        ids = self.vocab.encode(self.tokenizer.tokenize(text))
        return Encoded([self.vocab.eos_id, *ids], len(ids), sum(i == self.vocab.unk_id for i in ids))

    @torch.inference_mode()
    def predict_next(self, inputs: list[NextWordInput]) -> list[NextWordOutput]:
        encoded = [self.encode(item.text) for item in inputs]
        # The special ids may be among the top ones, so take that many more and drop them.
        k = min(max(item.top_k for item in inputs), self.max_words) + len(self.banned_ids)
        top_probs, top_ids = self.top_words(*self._padded([e.ids for e in encoded]), k)  # (B, k) each
        rows = []
        for item, e, ids, probs in zip(inputs, encoded, top_ids.tolist(), top_probs.tolist(), strict=True):
            words = [(i, p) for i, p in zip(ids, probs, strict=True) if i not in self.banned_ids][: item.top_k]
            predictions = [{"word": self.vocab.words[i], "probability": p} for i, p in words]
            rows.append({"predictions": predictions, "tokens": e.tokens, "unknown": e.unknown})
        # Plain dicts turned into models by one pydantic-core call: a third of the
        # time of model_construct per row, and this runs on the model thread,
        # whose every Python microsecond is taken from the event loop's GIL time.
        return NEXT_WORD_OUTPUTS.validate_python(rows)

    @torch.inference_mode()
    def generate(self, inputs: list[GenerateInput]) -> list[GenerateOutput]:
        encoded = [self.encode(item.prompt) for item in inputs]
        rows = [
            _Row(
                max_new_tokens=item.max_new_tokens,
                stops=[self.vocab.encode(self.tokenizer.tokenize(stop)) for stop in item.stop],
                generator=row_generator(item.seed),
                ids=[],
            )
            for item in inputs
        ]
        params = SamplingBatch(
            temperature=torch.tensor([item.temperature for item in inputs], device=self.device),
            top_k=torch.tensor([item.top_k for item in inputs], dtype=torch.long, device=self.device),
            top_p=torch.tensor([item.top_p for item in inputs], device=self.device),
        )
        hidden, state = self._prefill([e.ids for e in encoded])
        active = list(range(len(rows)))  # rows still decoding, in batch order
        while active:
            logits = self.model.decode(hidden).float().masked_fill(self.unk_mask, float("-inf"))  # (A, V)
            uniforms = draw_uniforms([rows[r].generator for r in active], self.device)
            chosen = choose_next(logits, params, uniforms).tolist()
            for r, token in zip(active, chosen, strict=True):
                self._append(rows[r], token)
            still = [i for i, r in enumerate(active) if rows[r].finish_reason is None]
            if len(still) < len(active):
                keep = torch.tensor(still, dtype=torch.long, device=self.device)
                state, params = state.index_select(2, keep), params.select(keep)
                chosen = [chosen[i] for i in still]
                active = [active[i] for i in still]
            if not active:
                break
            step = torch.tensor(chosen, dtype=torch.long, device=self.device).unsqueeze(1)  # (A, 1)
            out, state = self.model.encode(step, state)
            hidden = out[:, 0]
        return [
            GenerateOutput(
                text=self.tokenizer.detokenize(words := self.vocab.decode(row.ids)),
                tokens=words,
                finish_reason=row.finish_reason,
                prompt_tokens=e.tokens,
                unknown=e.unknown,
            )
            for row, e in zip(rows, encoded, strict=True)
        ]

    def _append(self, row: _Row, token: int) -> None:
        if token == self.vocab.eos_id:
            row.finish_reason = "eos"
            return
        row.ids.append(token)
        if any(stop and row.ids[-len(stop) :] == stop for stop in row.stops):
            row.finish_reason = "stop"
        elif len(row.ids) >= row.max_new_tokens:
            row.finish_reason = "length"

    def _padded(self, rows: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Right-pad id rows into (B, T) and return it with the (B,) lengths."""
        lengths = [len(r) for r in rows]
        width = max(lengths)
        pad = self.vocab.eos_id  # any id: nothing reads the padded positions
        batch = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        return batch.to(self.device), torch.tensor(lengths, device=self.device)

    def _prefill(self, rows: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Top-layer output (B, H) and state after each row's last real step.

        The state must not see the padding, so the batch runs in segments that
        end where some row ends, and each row's state is taken at its own end.
        """
        batch, lengths = self._padded(rows)
        state = self.model.zero_state(len(rows))  # (S, L, B, H)
        last_hidden = state.new_empty(len(rows), state.size(-1))  # (B, H)
        final_state = torch.empty_like(state)
        start = 0
        for end in sorted(set(lengths.tolist())):
            out, state = self.model.encode(batch[:, start:end], state)
            ending = lengths == end
            last_hidden[ending] = out[ending, -1]
            final_state[:, :, ending] = state[:, :, ending]
            start = end
        return last_hidden, final_state

    def warm_up(self) -> None:
        """Serve one dummy batch of each kind so the first client does not pay for it."""
        self.predict_next([NextWordInput(text="the"), NextWordInput(text="")])
        self.generate([GenerateInput(prompt="the", max_new_tokens=2, seed=0)])
