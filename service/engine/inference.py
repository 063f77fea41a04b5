"""Batched inference: token rows in, next-word distributions and decode steps out.

Inputs of different lengths share one batch by right-padding: a recurrent
model's output at step t depends only on steps <= t, so reading each row's
output at its own last real step gives exactly the answer it would get alone.
Every text starts with ``<eos>``, the line break, so an empty prefix asks
for the first word of a line. A line break is text: prompts keep theirs,
``/generate`` emits and continues through them, and ``/predict_next`` reports
the probability of one in its own field. A text ends (``finish_reason: "eos"``)
only where the model chooses ``<eot>``, which training puts at the end of
each corpus text, not of each line (``training.data``).

Generation is split into steps so that a scheduler (``service.engine.scheduler``)
can add and retire rows between any two of them::

    batch = predictor.start(rows)      # prefill the prompts: a DecodeBatch
    batch.extend(predictor.start(more)) # rows may join at any step
    while batch.rows:
        emitted = predictor.step(batch) # one token for every row; finished rows leave
    predictor.output(row)               # a finished row as a Generation

With a ``StateCache``, every prefix and prompt resumes from its longest
cached prefix and only the rest of it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import bentoml
import torch
from torch import Tensor

from models.bundle import ModelBundle, load_bundle
from models.completion import Corrections, PrefixIndex
from models.device import pick_dtype
from models.scoring import TopWords, compile_scorer, rows_per_decode
from models.tokenizer import IN_WORD_SEPARATORS, cased, is_in_word_separator, shown, starts_sentence
from models.top_k import top_k
from models.word_search import WordSearch, fragment_of, phase_after
from service.engine.blocklist import Blocklist
from service.engine.reports import TokenTally
from service.engine.request import Encoded, Row
from service.engine.sampling import SamplingBatch, choose_next, draw_uniforms, row_generator
from service.engine.state_cache import StateCache
from service.engine.threads import TorchThreads
from service.engine.types import (
    FinishReason,
    Generation,
    GenerationRequest,
    NextWordQuery,
    NextWords,
    Prediction,
    TokenLogprob,
)

# Scoring a prompt decodes (rows x positions) distributions of the whole vocabulary at once;
# this many at a time bounds that memory (at 17k words about 70 MB in float32).
SCORED_POSITIONS_AT_ONCE = 1024
# A character-level model's search finds at most this many words more than asked, to drop the blocked ones.
CHARACTER_SEARCH_SPARE = 100


@dataclass(frozen=True, slots=True)
class Prefix:
    """A /predict_next text as the model reads it, and what a person sees of its end."""

    encoded: Encoded  # the text to score: all of it, or what comes before the fragment
    fragment: str | None  # the token being completed, as the tokenizer reads it
    typed: str | None  # the characters a completion replaces, as typed: "well-kn" for well @-@ kn
    compound: str  # what every completion's word starts with: a compound's earlier parts ("well-"), else ""
    quote_open: bool  # the text has an unclosed '"', which a suggested '"' would close
    truncated: bool = False  # tokens before the ones read were left out (NextWordQuery.truncate)
    sentence_start: bool = False  # the word offered begins a sentence (models.tokenizer.starts_sentence)


def joined(spans: list[tuple[int, int]], first: int, last: int) -> bool:
    """Tokens ``first`` to ``last`` lie side by side in the text, with no white space between them."""
    return all(spans[i][1] == spans[i + 1][0] for i in range(first, last))


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


class Predictor:
    """Runs a loaded model for the service; one per worker, used from one thread."""

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

    def _split_fragment(self, item: NextWordQuery) -> Prefix:
        """The text to score, and the partly typed word at its end when the input asks to complete one."""
        completing = item.complete and item.text != "" and not item.text[-1].isspace()
        start, truncated = 0, False
        if item.truncate is None:
            tokens = self.tokenizer.tokenize(item.text)
        else:  # the last `truncate` tokens before the fragment, reading only the text's end
            tokens, start, truncated = self.tokenizer.tokenize_end(item.text, item.truncate + completing)
            truncated = truncated or len(tokens) > item.truncate + completing
        quote_open = item.text.count('"') % 2 == 1  # each '"' is a token: the whole text's, kept or not
        if not (completing and tokens):
            starting = self._starts_sentence(item.text, len(item.text))
            return Prefix(self._encode_tokens(tokens), None, None, "", quote_open, truncated, starting)
        # A compound typed so far ("well-kn": well @-@ kn) is completed as one written word: the
        # model completes its last part after the parts before it, and a person sees the whole.
        last = len(tokens) - 1
        read = item.text.lower() if self.tokenizer.settings.lowercase else item.text
        if (last < 2 or not is_in_word_separator(tokens[last - 1])) and read.endswith(tokens[last]):
            typed = item.text[len(item.text) - len(tokens[last]) :]  # the usual case: no compound
            starting = self._starts_sentence(item.text, len(item.text) - len(typed))
            encoded = self._encode_tokens(tokens[:-1])
            return Prefix(encoded, tokens[last], typed, "", quote_open, truncated, starting)
        spans = self.tokenizer.spans(item.text[start:])  # of the part read, whose tokens end as `tokens` do
        spans = spans[len(spans) - len(tokens) :]
        first = last
        while first >= 2 and is_in_word_separator(tokens[first - 1]) and joined(spans, first - 2, first):
            first -= 2
        compound = "".join(shown(token).text for token in tokens[first:last])
        typed = item.text[start + spans[first][0] :]
        starting = self._starts_sentence(item.text, len(item.text) - len(typed))
        encoded = self._encode_tokens(tokens[:-1])
        return Prefix(encoded, tokens[last], typed, compound, quote_open, truncated, starting)

    def _starts_sentence(self, text: str, end: int) -> bool:
        """Whether the word offered after ``text[:end]`` starts a sentence; only a lower-casing
        model's words are cased by it (``_prediction``), so only it asks."""
        return self.tokenizer.settings.lowercase and starts_sentence(text, end)

    def _prediction(self, token: str, probability: float, prefix: Prefix, correction: bool = False) -> Prediction:
        """A next word as a person writes it, with the model's token beside it."""
        written = shown(token, prefix.quote_open)
        word = prefix.compound + written.text
        if self.tokenizer.settings.lowercase:  # written in the person's case (models.tokenizer.cased)
            word = cased(word, prefix.typed or "", prefix.sentence_start)
        return {
            "word": word,
            "token": token,
            "joins_previous": written.joins_previous,
            "joins_next": written.joins_next,
            "probability": probability,
            "correction": correction,
        }

    @torch.inference_mode()
    def predict_next(self, inputs: list[NextWordQuery]) -> list[NextWords]:
        if self.word_search is not None:
            return self._predict_next_by_characters(inputs, self.word_search)
        split = [self._split_fragment(item) for item in inputs]
        rows = [prefix.encoded.ids for prefix in split]
        spans = [self.words.span(prefix.fragment) if prefix.fragment is not None else None for prefix in split]
        excluded = [self.blocklist.matching(item.exclude) if item.exclude else frozenset() for item in inputs]
        # The special ids, a row's excluded ones and the tokens written as another (",": "," and "@,@") may be
        # among the top ones: take that many more, then drop them. The blocklist's are masked in the scorer.
        k = min(max(item.top_k + len(out) for item, out in zip(inputs, excluded, strict=True)), self.max_words)
        k += len(self.specials) + len(self.written_twice)
        tokens, lengths, state, hidden = self._resume(rows)
        completions = self._span_tensors(spans) if any(span is not None for span in spans) else (None,) * 4
        top = TopWords(
            *self.scorer.top_words(
                tokens, lengths, state, hidden, k, self.vocab.line_break_id, *completions, self.blocklist.tensor
            )
        )
        if self.cache is not None:
            self.cache.store(rows, top.state, top.hidden)
        rows_out = zip(
            inputs,
            split,
            excluded,
            spans,
            top.ids.tolist(),
            top.probs.tolist(),
            top.mass.tolist(),
            top.line_break.tolist(),
            strict=True,
        )
        answers: list[NextWords] = []
        chosen: list[list[tuple[int, float]]] = []  # each row's words to offer, as (id, probability)
        for item, prefix, out_of_row, span, ids, probs, mass, line_break_probability in rows_out:
            answer: NextWords = {
                "tokens": prefix.encoded.tokens,
                "unknown": prefix.encoded.unknown,
                "truncated": prefix.truncated,
            }
            offered = [(i, p) for i, p in zip(ids, probs, strict=True) if i not in self.banned_ids]
            if out_of_row:
                offered = [(i, p) for i, p in offered if i not in out_of_row]
            if span is None:
                words = offered
                answer["line_break_probability"] = line_break_probability
            else:
                low, high = span
                place = self.words.place_of
                words = [(i, p) for i, p in offered if low <= place[i] < high]
                answer |= {"fragment": prefix.typed, "matching_words": high - low, "matching_probability": mass}
            if self.written_twice:
                words = self._once_each(words)
            answers.append(answer)
            chosen.append(words[: item.top_k])
        corrected = self._correct_typos(inputs, split, excluded, chosen, top)
        for item, prefix, answer, words, corrections in zip(inputs, split, answers, chosen, corrected, strict=True):
            answer["predictions"] = [
                self._prediction(self.vocab.words[i], p, prefix, correction=i in corrections)
                for i, p in words[: item.top_k]
            ]
        return answers

    def _correct_typos(
        self,
        inputs: list[NextWordQuery],
        split: list[Prefix],
        excluded: list[frozenset[int]],
        chosen: list[list[tuple[int, float]]],
        top: TopWords,
    ) -> list[set[int]]:
        """Fill the slots that a completion's exact matches leave empty with the words one slip away
        (``models.typos``), by the model's probability times the slip's weight. Changes ``chosen``
        in place: every word of a corrected row then has its probability among the matching words and
        the corrections together, each correction's weighted by its slip's. Returns each row's ids
        offered as corrections."""
        wanted = [
            (row, candidates)
            for row, (item, prefix, words) in enumerate(zip(inputs, split, chosen, strict=True))
            if prefix.fragment is not None
            and item.correct_typos
            and len(words) < item.top_k
            and (candidates := self.corrections.of(prefix.fragment))
        ]
        offered: list[set[int]] = [set() for _ in inputs]
        if not wanted:
            return offered
        index = torch.tensor([row for row, _ in wanted], device=self.device)
        log_probs = self.model.decode(top.hidden.index_select(0, index), top.state.index_select(2, index)).float()
        if not self.normalized:
            log_probs = log_probs.log_softmax(-1)
        for (row, candidates), row_log_probs in zip(wanted, log_probs.tolist(), strict=True):
            unwanted = self.banned_ids | excluded[row]
            ranked = sorted(
                (i for i in candidates if i not in unwanted), key=lambda i: -(row_log_probs[i] + candidates[i])
            )
            words = chosen[row]
            # Each correction's probability weighted by its slip's: the chance it is the word meant.
            weighted = {i: math.exp(row_log_probs[i] + candidates[i]) for i in ranked}
            exact_mass = float(top.mass[row])  # the exact matches' share of the model's probability
            mass = exact_mass + sum(weighted.values())
            fills = ranked[: inputs[row].top_k - len(words)]
            chosen[row] = [(i, p * exact_mass / mass) for i, p in words]
            chosen[row] += [(i, weighted[i] / mass) for i in fills]
            offered[row].update(fills)
        return offered

    def _once_each(self, words: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """The words with no two written alike: the likelier of two tokens a person writes the same
        way (``,`` and ``@,@``) is the one offered, with its own probability."""
        seen: set[str] = set()
        kept = []
        for i, p in words:
            if i in self.written_twice:
                written = shown(self.vocab.words[i]).text
                if written in seen:
                    continue
                seen.add(written)
            kept.append((i, p))
        return kept

    def _predict_next_by_characters(self, inputs: list[NextWordQuery], search: WordSearch) -> list[NextWords]:
        """A character-level model's next words: the fragment being completed is simply part of the text."""
        read = [
            (self.tokenizer.tokenize(item.text), 0, False)
            if item.truncate is None
            else self.tokenizer.tokenize_end(item.text, item.truncate)
            for item in inputs
        ]
        encoded = [self._encode_tokens(tokens) for tokens, _, _ in read]
        rows = [e.ids for e in encoded]
        hidden, state = self.scorer.prefill(*self._resume(rows))
        if self.cache is not None:
            self.cache.store(rows, state, hidden)
        fragments = [
            fragment_of(item.text) if item.complete and item.text and not item.text[-1].isspace() else ""
            for item in inputs
        ]
        phases = [phase_after(item.text, bool(fragment)) for item, fragment in zip(inputs, fragments, strict=True)]
        # Its words are found, not tokens: the blocked and excluded ones are dropped after a search that
        # many words larger (at most CHARACTER_SEARCH_SPARE more: a long blocklist can shorten an answer).
        unwanted = [self.blocklist.written | {word.lower() for word in item.exclude} for item in inputs]
        spare = min(max(len(words) for words in unwanted), CHARACTER_SEARCH_SPARE)
        k = max(item.top_k for item in inputs) + spare
        words, line_break = search.next_words(hidden, state, phases, k)
        out: list[NextWords] = []
        for item, e, (_, _, truncated), fragment, found, p_line_break, unwanted_words in zip(
            inputs, encoded, read, fragments, words, line_break.tolist(), unwanted, strict=True
        ):
            found = [(w, p) for w, p in found if (fragment + w).lower() not in unwanted_words]
            answer: NextWords = {"tokens": e.tokens, "unknown": e.unknown, "truncated": truncated}
            if fragment:
                answer["fragment"] = fragment
            else:
                answer["line_break_probability"] = p_line_break
            prefix = Prefix(e, fragment or None, fragment or None, "", item.text.count('"') % 2 == 1)
            answer["predictions"] = [self._prediction(fragment + w, p, prefix) for w, p in found[: item.top_k]]
            out.append(answer)
        return out

    def _span_tensors(self, spans: list[tuple[int, int] | None]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The sorted word ids (W,), the completing rows (C,) and their spans' (C,) low and high ends."""
        completing = [(row, span) for row, span in enumerate(spans) if span is not None]
        rows = torch.tensor([row for row, _ in completing], device=self.device)
        low = torch.tensor([span[0] for _, span in completing], device=self.device)
        high = torch.tensor([span[1] for _, span in completing], device=self.device)
        return self.sorted_word_ids, rows, low, high

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

    def log_probs(self, hidden: Tensor, state: Tensor) -> Tensor:
        """(B, V) next-token log-probabilities, /predict_next's: the model with its recency cache."""
        logits = self.model.decode(hidden, state).float()
        return logits if self.normalized else logits.log_softmax(-1)

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

    def _likeliest(self, logp: Tensor, n: int) -> list[tuple[tuple[int, float], ...]]:
        """Each row's ``n`` likeliest ids with their log-probabilities, leaving out the textless ids."""
        values, ids = top_k(logp, n + len(self.textless_ids))
        return [
            tuple((i, v) for i, v in zip(row_ids, row_values, strict=True) if i not in self.textless_ids)[:n]
            for row_ids, row_values in zip(ids.tolist(), values.tolist(), strict=True)
        ]

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

    def generate(self, inputs: list[GenerationRequest]) -> list[Generation]:
        """Decode a whole batch to the end (request-level batching, in process)."""
        rows = [self.new_row(item) for item in inputs]
        batch = self.start(rows)
        while batch.rows:
            self.step(batch)
        return [self.output(row) for row in rows]

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

    def warm_up(self) -> None:
        """Serve a few dummy batches of each kind so the first client does not pay for compiling them."""
        for _ in range(3):
            self.predict_next([NextWordQuery("the", 5), NextWordQuery("", 5), NextWordQuery("a", 5, complete=True)])
            self.generate([GenerationRequest("the", max_new_tokens=2, seed=0)])
            if self.cache is not None:
                self.cache.clear()
        self.take_tally()  # the warm-up's tokens are no client's

    def take_tally(self) -> TokenTally:
        """The prompt and prefix tokens read and run since the last call; the service turns them into metrics."""
        tally, self.tally = self.tally, TokenTally()
        return tally


def load_predictor(
    stored: bentoml.Model,
    device: torch.device,
    precision: str,
    state_cache_mb: int,
    threads: TorchThreads,
    blocklist: tuple[str, ...] = (),
) -> Predictor:
    """Load the model, with a state cache of ``state_cache_mb`` MiB (0: none) and the words it
    never offers (``service.engine.blocklist``), and serve warm-up batches.

    ``precision``: as ``models.device.pick_dtype`` reads it. Call it on the
    thread that will run the model (``service.service`` says why).
    """
    torch.set_num_threads(threads.large_batch)
    bundle = load_bundle(stored, device, pick_dtype(precision, device))
    cache = None
    if state_cache_mb:
        config = bundle.config
        shape = (config.state_slots, config.num_layers, config.hidden_size)
        cache = StateCache(state_cache_mb * 2**20, shape, bundle.dtype, device)
    predictor = Predictor(bundle, device, cache, blocklist)
    predictor.warm_up()
    return predictor
