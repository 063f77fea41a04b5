"""/predict_next's job: a text's next words, or the words completing its last one, as a person writes them.

Inputs of different lengths share one batch by right-padding: a recurrent
model's output at step t depends only on steps <= t, so reading each row's
output at its own last real step gives exactly the answer it would get alone.
Every text starts with ``<eos>``, the line break, so an empty prefix asks
for the first word of a line, and the probability of a line break is
reported in its own field. A partly typed word is completed by the words
that start with it (``models.completion``), its empty slots filled by words
one slip away (``models.typos``); a character-level model searches words
over characters (``models.word_search``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from models.scoring import TopWords
from models.tokenizer import cased, is_in_word_separator, shown, starts_sentence
from models.word_search import WordSearch, fragment_of, phase_after
from service.engine.loaded import LoadedModel
from service.engine.request import Encoded
from service.engine.types import NextWordQuery, NextWords, Prediction

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


class NextWordJob(LoadedModel):
    """/predict_next's answers."""

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
