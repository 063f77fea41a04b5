"""Prefill and next-word scoring, each in one TorchScript call.

The service runs the model on a thread beside the event loop. Every eager
torch op called from Python drops the GIL and takes it back, and taking it
back can wait for the event loop's switch interval, so a dozen small ops per
batch cost more than the math. Scripted, each path runs with the GIL
released once.

Both calls resume each row from a state of its own, so a row can start
where a cached prefix ended (``service.engine.state_cache``) or from scratch (the
zero state). Rows are right-padded; ``lengths`` says how many of a row's
tokens are real, and may be 0 for a row whose whole prefix was cached.
Tokens run one step at a time, so a row's numbers do not depend on where
its text was cut (see ``prefill``).
On the CPU, ``top_words`` decodes its rows in slices of ``ROWS_PER_DECODE``,
so that large batches reuse memory instead of page-faulting it in again.

Usage::

    scorer = compile_scorer(bundle.model, bundle.config.log_probabilities)  # a model loaded with torch.jit.load
    hidden, state = scorer.prefill(tokens, lengths, state, hidden)
    top = TopWords(*scorer.top_words(tokens, lengths, state, hidden, k, line_break_id))
    # tokens (B, T) ids, lengths (B,), state (S, L, B, H), hidden (B, H) the top-layer
    # output before ``tokens`` (read only where a length is 0)
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor, nn

from models.top_k import top_k

# The decoder's (B, V) passes allocate a few float32 tensors of B * V * 4 bytes each:
# at 128 rows over 16,970 words 8.7 MB apiece, which glibc hands back to the kernel
# when freed, so the next batch page-faults them in again. Slices of 32 rows reuse
# theirs, and large batches run faster (docs/benchmarks.md). CUDA's caching allocator
# keeps its memory, so on a GPU the rows go in one slice.
ROWS_PER_DECODE = 32


class TopWords(NamedTuple):
    """``Scorer.top_words``' answer for B rows: ``TopWords(*scorer.top_words(...))``.

    The scripted method returns a plain tuple of these fields: a NamedTuple
    returned from TorchScript makes Python build its class anew at every call
    (``collections.namedtuple``, which compiles source), which cost more than a
    lone typist's whole decode.
    """

    probs: Tensor  # (B, k) probabilities of the likeliest next words, likeliest first
    ids: Tensor  # (B, k) their vocabulary ids
    mass: Tensor  # (B,) a completing row's total probability of its matching words; 1 for the others
    line_break: Tensor  # (B,) the probability that a line break comes next
    hidden: Tensor  # (B, H) top-layer output after each row, for the state cache
    state: Tensor  # (S, L, B, H) state after each row, for the state cache


def rows_per_decode(device: torch.device) -> int:
    """How many rows ``top_words`` decodes at once on ``device``."""
    return ROWS_PER_DECODE if device.type == "cpu" else 2**31 - 1


class Scorer(nn.Module):
    """Runs right-padded rows from per-row states; reads each row at its own last real step."""

    # normalized: the model's decode returns log-probabilities (an adaptive softmax), which
    # need no (B, V) log-sum-exp, a pass worth skipping. A constant to TorchScript.
    __constants__ = ["normalized", "rows_per_decode"]

    def __init__(self, model: torch.jit.ScriptModule, normalized: bool, rows_per_decode: int = ROWS_PER_DECODE) -> None:
        super().__init__()
        self.model = model
        self.normalized = normalized
        self.rows_per_decode = rows_per_decode  # top_words decodes its rows in slices of this many

    def forward(self, tokens: Tensor, lengths: Tensor, state: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        return self.prefill(tokens, lengths, state, hidden)

    @torch.jit.export
    def prefill(self, tokens: Tensor, lengths: Tensor, state: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Top-layer output (B, H) and state (S, L, B, H) after each row's last real token.

        Runs one token a step for every row, and a row past its end keeps its
        state, so no state sees padding. One token a step also makes every row
        take the same sequence of operations however its text is cut: a matrix
        product over T positions rounds differently from T products over one,
        so this is what lets a row resumed from a cached state get, bit for
        bit, what a run from the start gets.
        """
        for t in range(tokens.size(1)):
            out, stepped = self.model.encode(tokens[:, t : t + 1], state)  # (B, 1, H), (S, L, B, H)
            live = lengths > t  # (B,)
            state = torch.where(live.view(1, 1, -1, 1), stepped, state)
            hidden = torch.where(live.unsqueeze(1), out[:, 0], hidden)
        return hidden, state

    @torch.jit.export
    def top_words(
        self,
        tokens: Tensor,
        lengths: Tensor,
        state: Tensor,
        hidden: Tensor,
        k: int,
        line_break_id: int,
        sorted_ids: Tensor | None = None,
        completing: Tensor | None = None,
        low: Tensor | None = None,
        high: Tensor | None = None,
        blocked: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``TopWords``' fields: the k likeliest next words after each row, and its probability of ``line_break_id``.

        ``blocked`` (N,) ids are never among the top words unless fewer than k others are left (then
        last, and the caller drops them): the k slots go to the likeliest of the rest. Their
        probability stays part of every total, a completing row's span's too, as the special tokens'
        does, so the other words keep the model's own probabilities.

        With ``sorted_ids`` (W,), the word ids in sorted order (``models.completion``),
        the rows listed in ``completing`` (C,) keep only the words at sorted places
        ``[low[c], high[c])``: those that complete the row's partly typed word. Only
        that slice of the row's logits is read, so a completion costs its span, not
        the vocabulary. Their probabilities are renormalized over the slice (zeros
        past its end), and the third result (B,) is the slice's total probability
        before that (``mass``: 0 for an empty slice; 1 for the other rows).
        """
        hidden, state = self.prefill(tokens, lengths, state, hidden)
        parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        for first in range(0, hidden.size(0), self.rows_per_decode):
            last = min(first + self.rows_per_decode, hidden.size(0))
            rows_hidden, rows_state = hidden[first:last], state[:, :, first:last]
            parts.append(
                self._top_rows(
                    rows_hidden, rows_state, first, k, line_break_id, sorted_ids, completing, low, high, blocked
                )
            )
        if len(parts) == 1:  # the usual case: no copies
            probs, top_ids, mass, line_break = parts[0]
            return probs, top_ids, mass, line_break, hidden, state
        probs = torch.cat([part[0] for part in parts])
        top_ids = torch.cat([part[1] for part in parts])
        mass = torch.cat([part[2] for part in parts])
        line_break = torch.cat([part[3] for part in parts])
        return probs, top_ids, mass, line_break, hidden, state

    def _top_rows(
        self,
        hidden: Tensor,
        state: Tensor,
        offset: int,
        k: int,
        line_break_id: int,
        sorted_ids: Tensor | None,
        completing: Tensor | None,
        low: Tensor | None,
        high: Tensor | None,
        blocked: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``top_words``' first four results for the rows of one slice, from ``offset`` on."""
        logits = self.model.decode(hidden, state).float()  # (B, V)
        # (B, 1) log-sum-exp of each row: log 1 = 0 when the model already normalized it
        total = logits.new_zeros(logits.size(0), 1) if self.normalized else logits.logsumexp(dim=-1, keepdim=True)
        # The blocked words take no slot of the top k, but keep their share of every total: the other
        # words' probabilities stay the model's own, as with the special tokens.
        ranked = logits if blocked is None else logits.index_fill(1, blocked, float("-inf"))  # (B, V)
        # exp(logit - logsumexp) for the top words only, without a (B, V) softmax.
        # torch.topk's values, a few times faster, ties named by vocabulary id (models.top_k)
        top_logits, top_ids = top_k(ranked, k)
        probs = (top_logits - total).exp()
        line_break = (logits[:, line_break_id] - total[:, 0]).exp()  # (B,)
        mass = torch.ones(logits.size(0), dtype=probs.dtype, device=probs.device)
        if sorted_ids is not None and completing is not None and low is not None and high is not None:
            for c in range(completing.size(0)):
                row, first, last = int(completing[c]) - offset, int(low[c]), int(high[c])
                if row < 0 or row >= logits.size(0):  # another slice's row
                    continue
                # The span's word ids in id order, so that top_k's lowest-column-first
                # rule names equally likely words by vocabulary id, as the other rows do.
                ids = sorted_ids[first:last].sort().values  # (span,)
                kept = ranked[row].index_select(0, ids)  # (span,)
                probs[row] = 0.0
                top_ids[row] = 0
                mass[row] = 0.0
                if last > first:
                    span_total = logits[row].index_select(0, ids).logsumexp(dim=0)
                    best, where = top_k(kept.unsqueeze(0), min(k, last - first))
                    probs[row, : best.size(1)] = (best[0] - span_total).exp()
                    top_ids[row, : best.size(1)] = ids.index_select(0, where[0])
                    mass[row] = (span_total - total[row, 0]).exp()
        return probs, top_ids, mass, line_break


def compile_scorer(
    model: torch.jit.ScriptModule, normalized: bool = False, rows_per_decode: int = ROWS_PER_DECODE
) -> torch.jit.ScriptModule:
    """Script ``Scorer`` around a model loaded with ``torch.jit.load``.

    ``normalized``: the model's decode returns log-probabilities (``ModelConfig.log_probabilities``).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        return torch.jit.script(Scorer(model, normalized, rows_per_decode))
