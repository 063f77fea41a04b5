"""Prefill and next-word scoring, each in one TorchScript call.

The service runs the model on a thread beside the event loop. Every eager
torch op called from Python drops the GIL and takes it back, and taking it
back can wait for the event loop's switch interval, so a dozen small ops per
batch cost more than the math. Scripted, each path runs with the GIL
released once.

Both calls resume each row from a state of its own, so a row can start
where a cached prefix ended (``service.state_cache``) or from scratch (the
zero state). Rows are right-padded; ``lengths`` says how many of a row's
tokens are real, and may be 0 for a row whose whole prefix was cached.

Usage::

    scorer = compile_scorer(bundle.model)  # a model loaded with torch.jit.load
    hidden, state = scorer.prefill(tokens, lengths, state, hidden)
    probs, ids, hidden, state = scorer.top_words(tokens, lengths, state, hidden, k, True)
    # tokens (B, T) ids, lengths (B,), state (S, L, B, H), hidden (B, H) the top-layer
    # output before ``tokens`` (read only where a length is 0); probs and ids (B, k)
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


class Scorer(nn.Module):
    """Runs right-padded rows from per-row states; reads each row at its own last real step."""

    def __init__(self, model: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, lengths: Tensor, state: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        return self.prefill(tokens, lengths, state, hidden)

    @torch.jit.export
    def prefill(self, tokens: Tensor, lengths: Tensor, state: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Top-layer output (B, H) and state (S, L, B, H) after each row's last real token.

        The state must not see the padding, so the batch runs in segments that
        end where some row ends, and each row's state is taken at its own end.
        Running a sequence in pieces gives the same numbers as running it whole.
        """
        last = hidden.clone()
        final = state.clone()
        start = 0
        ends: list[int] = torch.unique(lengths).tolist()  # sorted
        for end in ends:
            if end == 0:
                continue
            out, state = self.model.encode(tokens[:, start:end], state)  # (B, end - start, H)
            ending = lengths == end
            last[ending] = out[ending, -1]
            final[:, :, ending] = state[:, :, ending]
            start = end
        return last, final

    @torch.jit.export
    def top_words(
        self, tokens: Tensor, lengths: Tensor, state: Tensor, hidden: Tensor, k: int, keep_state: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The k likeliest next words after each row: (B, k) probabilities and ids, likeliest first.

        Also returns the top-layer output and, with ``keep_state``, the state
        after each row (for the cache). Without it the batch runs in one pass
        and the returned state is the input state: a recurrent model's output at
        step t depends only on steps <= t, so padding never reaches an output.
        """
        if keep_state:
            hidden, state = self.prefill(tokens, lengths, state, hidden)
        elif tokens.size(1) > 0:
            batch = tokens.size(0)
            out, _ = self.model.encode(tokens, state)  # (B, T, H)
            read = out[torch.arange(batch, device=tokens.device), (lengths - 1).clamp_min(0)]  # (B, H)
            hidden = torch.where((lengths > 0).unsqueeze(1), read, hidden)
        logits = self.model.decode(hidden).float()  # (B, V)
        # exp(logit - logsumexp) for the top words only, without a (B, V) softmax.
        top_logits, top_ids = logits.topk(k, dim=-1)
        return (top_logits - logits.logsumexp(dim=-1, keepdim=True)).exp(), top_ids, hidden, state


def compile_scorer(model: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Script ``Scorer`` around a model loaded with ``torch.jit.load``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        return torch.jit.script(Scorer(model))
