"""A model loaded for serving, with what every job of the engine reads of it.

``LoadedModel`` holds the model, its vocabulary and tokenizer, the state
cache, the blocklist and the indexes derived from them once, and the steps
every job shares: encoding a text, resuming rows from the state cache, the
token tally, the log-probabilities of a decode. The jobs build on it, each
in its own module: /predict_next's answers (``service.engine.next_words``),
generation (``service.engine.generation``) and scoring
(``service.engine.scoring``); ``service.engine.inference.Predictor`` is all
three.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.bundle import ModelBundle
from models.completion import Corrections, PrefixIndex
from models.scoring import compile_scorer, rows_per_decode
from models.tokenizer import IN_WORD_SEPARATORS, shown
from models.top_k import top_k
from models.word_search import WordSearch
from service.engine.blocklist import Blocklist
from service.engine.reports import TokenTally
from service.engine.request import Encoded
from service.engine.state_cache import StateCache


class LoadedModel:
    """A loaded model and what its jobs share; one per worker, used from one thread."""

    def __init__(
        self,
        bundle: ModelBundle,
        device: torch.device,
        cache: StateCache | None = None,
        blocklist: tuple[str, ...] = (),
    ) -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.vocab = bundle.vocab
        self.tokenizer = bundle.tokenizer
        self.device = device
        self.cache = cache
        self.tally = TokenTally()
        self.blocklist = Blocklist(self.vocab, blocklist, device)
        self.specials = frozenset(self.vocab.special_ids)
        self.banned_ids = self.specials | self.blocklist.ids  # never offered to clients as words
        # Never offered as a token's alternatives: no text is spelled by them (a line break is).
        self.textless_ids = frozenset(i for i in (self.vocab.unk_id, self.vocab.end_id) if i is not None)
        self.max_words = len(self.vocab) - len(self.specials)
        # Tokens a person writes the same way as another ("@,@" and ","): an answer offers one of each.
        index = self.vocab.index
        self.written_twice = frozenset(
            i
            for separator in IN_WORD_SEPARATORS
            if separator in index and shown(separator).text in index
            for i in (index[separator], index[shown(separator).text])
        )
        self.normalized = bundle.config.log_probabilities  # decode returns log-probabilities already
        self.scorer = compile_scorer(self.model, self.normalized, rows_per_decode(device))
        self.words = PrefixIndex(self.vocab)
        self.corrections = Corrections(self.words)
        self.sorted_word_ids = torch.tensor(self.words.sorted_ids, device=device)  # (W,)
        # A character-level model finds next words by a search over characters.
        self.word_search = WordSearch(self.model, self.vocab, device) if self.tokenizer.characters else None

    def encode(self, text: str) -> Encoded:
        return self._encode_tokens(self.tokenizer.tokenize(text))

    def _encode_tokens(self, tokens: list[str]) -> Encoded:
        ids = self.vocab.encode(tokens)
        return Encoded([self.vocab.line_break_id, *ids], len(ids), ids.count(self.vocab.unk_id))

    def _resume(self, rows: list[list[int]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Where each id row starts: the right-padded ids still to run (B, T), their (B,) lengths,
        and the state (S, L, B, H) and top-layer output (B, H) after the cached part."""
        if self.cache is None:
            rest = rows
            state = self.model.zero_state(len(rows))
            hidden = state.new_zeros(len(rows), state.size(-1))
        else:
            found = [self.cache.find(ids) for ids in rows]
            rest = [ids[prefix.length :] for ids, prefix in zip(rows, found, strict=True)]
            state, hidden = self.cache.load([prefix.slot for prefix in found])
        lengths = [len(r) for r in rest]
        self.tally.read += sum(len(ids) for ids in rows)
        self.tally.run += sum(lengths)
        width = max(lengths)
        pad = self.vocab.unk_id  # any id: nothing reads the padded positions
        tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rest], dtype=torch.long).reshape(len(rows), width)
        return tokens.to(self.device), torch.tensor(lengths, device=self.device), state, hidden

    def take_tally(self) -> TokenTally:
        """The prompt and prefix tokens read and run since the last call; the service turns them into metrics."""
        tally, self.tally = self.tally, TokenTally()
        return tally

    def log_probs(self, hidden: Tensor, state: Tensor) -> Tensor:
        """(B, V) next-token log-probabilities, /predict_next's: the model with its recency cache."""
        logits = self.model.decode(hidden, state).float()
        return logits if self.normalized else logits.log_softmax(-1)

    def _likeliest(self, logp: Tensor, n: int) -> list[tuple[tuple[int, float], ...]]:
        """Each row's ``n`` likeliest ids with their log-probabilities, leaving out the textless ids."""
        values, ids = top_k(logp, n + len(self.textless_ids))
        return [
            tuple((i, v) for i, v in zip(row_ids, row_values, strict=True) if i not in self.textless_ids)[:n]
            for row_ids, row_values in zip(ids.tolist(), values.tolist(), strict=True)
        ]
