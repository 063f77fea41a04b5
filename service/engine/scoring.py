"""Scoring's job: every token's log-probability after those before it, as /v1/completions' ``echo``
with ``logprobs`` asks (and lm-evaluation-harness with it)."""

from __future__ import annotations

import torch

from service.engine.loaded import LoadedModel
from service.engine.types import TokenLogprob

# Scoring a prompt decodes (rows x positions) distributions of the whole vocabulary at once;
# this many at a time bounds that memory (at 17k words about 70 MB in float32).
SCORED_POSITIONS_AT_ONCE = 1024


class ScoringJob(LoadedModel):
    """Prompts scored position by position."""

    @torch.inference_mode()
    def score(self, rows: list[list[int]], top: int) -> list[list[TokenLogprob | None]]:
        """Every id's log-probability after the ids before it, from the zero state, and the ``top``
        likeliest ids there; None for each row's first id, which nothing precedes.

        What ``training.fresh_texts`` computes of a text, from /predict_next's distribution.
        """
        out: list[list[TokenLogprob | None]] = [[None] for _ in rows]
        width = max(len(ids) for ids in rows)
        positions = sum(len(ids) - 1 for ids in rows)  # each id but the last is run; no cache here
        self.tally.read += positions
        self.tally.run += positions
        pad = self.vocab.unk_id  # any id: padding comes after every real position
        tokens = torch.tensor([ids + [pad] * (width - len(ids)) for ids in rows], dtype=torch.long)
        tokens = tokens.reshape(len(rows), width).to(self.device)
        state = self.model.zero_state(len(rows))
        span = max(1, SCORED_POSITIONS_AT_ONCE // len(rows))
        for first in range(0, width - 1, span):
            last = min(first + span, width - 1)
            logits, state = self.model(tokens[:, first:last], state)  # (B, T, V): the ids at first+1 .. last
            logp = logits.float().flatten(0, 1)
            if not self.normalized:
                logp = logp.log_softmax(-1)
            targets = tokens[:, first + 1 : last + 1].flatten()
            picked = logp.gather(1, targets.unsqueeze(1))[:, 0].view(len(rows), -1).tolist()
            likeliest = self._likeliest(logp, top)
            for b, ids in enumerate(rows):
                for t in range(min(last, len(ids) - 1) - first):
                    pairs = likeliest[b * (last - first) + t]
                    out[b].append(TokenLogprob(ids[first + t + 1], picked[b][t], pairs))
        return out
