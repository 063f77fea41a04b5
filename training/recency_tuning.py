"""Choosing the recency cache's terms on the validation split, after training, for streams and fresh texts.

The cache (``models.recency``) has no trained weights: only how fast a
word's weight fades with age (``decay``), the cache's share of the mixture
(``weight``), how many of the newest words it leaves out (``skip``) and how
many words it must read to reach half its share (``fill``). One pass of the
model, cache off, gives the model's probability of every target; the
window before every target is read off the text itself; then each point of
a small grid costs a few tensor operations, not a pass of the model.

The split is scored twice: as one stream (``EVAL_BATCH_SIZE`` rows, the
state carried across windows, as ``training.evaluate`` reads it), where the
window is always full, and as fresh texts (``training.fresh_texts``), each
from an empty window, as people type. The grid point with the lowest sum
of the two cross-entropies wins: a cache tuned on the stream alone takes a
share that a fresh text's few words cannot carry, and echoes them.

Then ``repeat``, the factor on the probability of the word just typed, is
chosen on the fresh texts alone: they are what people meet, and the
stream's headings (`` = = Career = = ``) repeat ``=`` back to back, which
no typed text does. Its cost on the stream is measured and reported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from models.rnn import RecurrentLM
from models.vocab import SPECIALS
from training.data import EVAL_BATCH_SIZE, EVAL_BPTT, batchify, bptt_windows
from training.fresh_texts import TEXTS_PER_BATCH, padded

DECAYS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)  # per word of age
WEIGHTS = (0.0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)  # 0: no cache
SKIPS = (0, 1, 2, 3)  # newest words left out
FILLS = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)  # words read for half the weight
REPEATS = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)  # 1: the word just typed as the mixture has it
FIRST_WORD_ID = len(SPECIALS)  # the specials come first (models.vocab); repeat leaves them alone
WINDOW_ENTRIES_PER_CHUNK = 2**22  # bounds the (B, chunk, W) window tensors
BUCKET_GROWTH = 2  # the longest text of a fresh-text table against its shortest


@dataclass(frozen=True)
class RecencyChoice:
    decay: float
    weight: float
    skip: int
    fill: float
    repeat: float
    perplexity: float  # on the split read as a stream, with the cache
    perplexity_without: float  # the stream, the model alone
    fresh_perplexity: float  # on the split's fresh texts, with the cache
    fresh_perplexity_without: float  # the fresh texts, the model alone

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Scored:
    """Every target of one reading of the split, with what the grid needs of it."""

    model_p: Tensor  # (B, N) the model's probability of each target
    model_previous: Tensor  # (B, N) the model's probability, at each target, of the word just read
    texts: Tensor  # (B, N + 1) the ids read, -1 past a row's end
    real: Tensor  # (B, N) whether each target is a real one
    repeats: Tensor  # (B, N) whether the word just read is a word (no special) that ``repeat`` applies to


@torch.inference_mode()
def tune_recency(model: RecurrentLM, stream: Tensor, texts: list[list[int]], device: torch.device) -> RecencyChoice:
    """Set ``model.recency``'s terms to the grid's best on ``stream`` (1-D ids) and the fresh
    ``texts`` (``training.fresh_texts.encode_texts``) of the same split; return them."""
    was_training = model.training
    model.eval()
    model.recency.weight = 0.0
    readings = [[_score_stream(model, stream, device)], _score_texts(model, texts, device)]
    model.train(was_training)
    window = model.recency.window
    losses: dict[tuple[float, float, int, float], list[float]] = {}
    for decay in DECAYS:
        for skip in SKIPS:
            caches = [
                [cache_probabilities(piece.texts, window, decay, skip) for piece in reading] for reading in readings
            ]
            for weight in WEIGHTS:
                for fill in FILLS:
                    losses[(decay, weight, skip, fill)] = [
                        _cross_entropy(reading, cache, weight, fill, 1.0)
                        for reading, cache in zip(readings, caches, strict=True)
                    ]
    decay, weight, skip, fill = min(losses, key=lambda point: sum(losses[point]))
    caches = [[cache_probabilities(piece.texts, window, decay, skip) for piece in reading] for reading in readings]
    by_repeat = {
        repeat: [
            _cross_entropy(reading, cache, weight, fill, repeat)
            for reading, cache in zip(readings, caches, strict=True)
        ]
        for repeat in REPEATS
    }
    repeat = min(REPEATS, key=lambda factor: by_repeat[factor][1])
    recency = model.recency
    recency.decay, recency.weight, recency.skip, recency.fill, recency.repeat = decay, weight, skip, fill, repeat
    stream_loss, fresh_loss = by_repeat[repeat]
    alone_stream, alone_fresh = losses[(0.0, 0.0, 0, 0.0)]
    return RecencyChoice(
        decay,
        weight,
        skip,
        fill,
        repeat,
        math.exp(stream_loss),
        math.exp(alone_stream),
        math.exp(fresh_loss),
        math.exp(alone_fresh),
    )


def _score_stream(model: RecurrentLM, stream: Tensor, device: torch.device) -> _Scored:
    rows = batchify(stream, EVAL_BATCH_SIZE).to(device)  # (B, N + 1)
    state = model.zero_state(EVAL_BATCH_SIZE)
    chosen, previous = [], []
    for inputs, targets in bptt_windows(rows, EVAL_BPTT):
        logits, state = model(inputs, state)  # (B, T, V)
        log_probs = logits.float().log_softmax(-1)
        chosen.append(log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).exp())
        previous.append(log_probs.gather(-1, inputs.unsqueeze(-1)).squeeze(-1).exp())
    model_p = torch.cat(chosen, dim=1)
    real = torch.ones_like(model_p, dtype=torch.bool)
    return _Scored(model_p, torch.cat(previous, dim=1), rows, real, rows[:, :-1] >= FIRST_WORD_ID)


def _score_texts(model: RecurrentLM, texts: list[list[int]], device: torch.device) -> list[_Scored]:
    """Every text alone from the zero state, in tables of texts of like length.

    A corpus of short messages beside a few long paragraphs (``--corpus mixed``), padded into one
    table, would make the cache's grid run every message as long as the longest paragraph: each
    table holds texts at most ``BUCKET_GROWTH`` times as long as its shortest, so padding at most
    that multiplies the work."""
    texts = sorted((text for text in texts if len(text) > 1), key=len)
    buckets: list[list[list[int]]] = []
    for text in texts:
        if buckets and len(text) <= BUCKET_GROWTH * len(buckets[-1][0]):
            buckets[-1].append(text)
        else:
            buckets.append([text])
    return [_score_bucket(model, bucket, device) for bucket in buckets]


def _score_bucket(model: RecurrentLM, texts: list[list[int]], device: torch.device) -> _Scored:
    """``texts``, sorted by length, as one (B, N + 1) table; each batch of the model is only as
    wide as its longest text."""
    rows = padded(texts, pad=-1).to(device)  # (B, N + 1)
    model_p = torch.zeros(rows.size(0), rows.size(1) - 1, device=device)
    model_previous = torch.zeros_like(model_p)
    for first in range(0, len(texts), TEXTS_PER_BATCH):
        width = len(texts[min(first + TEXTS_PER_BATCH, len(texts)) - 1])  # the batch's longest
        batch = rows[first : first + TEXTS_PER_BATCH, :width]
        inputs, targets = batch[:, :-1].clamp(min=0), batch[:, 1:]
        log_probs = model(inputs, model.zero_state(batch.size(0)))[0].float().log_softmax(-1)
        model_p[first : first + TEXTS_PER_BATCH, : width - 1] = (
            log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1).exp()
        )
        model_previous[first : first + TEXTS_PER_BATCH, : width - 1] = (
            log_probs.gather(-1, inputs.unsqueeze(-1)).squeeze(-1).exp()
        )
    return _Scored(model_p, model_previous, rows, rows[:, 1:] >= 0, rows[:, :-1] >= FIRST_WORD_ID)


def _cross_entropy(
    reading: list[_Scored], caches: list[_CacheReading], weight: float, fill: float, repeat: float
) -> float:
    """The mean cross-entropy over every real target of a reading's tables."""
    total, count = 0.0, 0
    for piece, cache in zip(reading, caches, strict=True):
        log_p = _mixed(piece, cache, weight, fill, repeat)[piece.real].log()
        total, count = total - log_p.sum().item(), count + log_p.numel()
    return total / count


def _mixed(reading: _Scored, cache: _CacheReading, weight: float, fill: float, repeat: float) -> Tensor:
    """(B, N) each target's probability under the model mixed with the cache at these terms."""
    read = cache.read
    share = torch.where(read > 0, weight * read / (read + fill), torch.zeros_like(read))  # (B, N)
    mixed = (1 - share) * reading.model_p + share * cache.target
    if repeat < 1:  # the word just read keeps ``repeat`` of its mixed probability; the rest is renormalized
        previous = (1 - share) * reading.model_previous + share * cache.previous
        again = reading.texts[:, 1:] == reading.texts[:, :-1]  # (B, N) the target is the word just read
        factor = torch.where(reading.repeats & again, repeat, 1.0)
        norm = torch.where(reading.repeats, 1 - (1 - repeat) * previous, 1.0)
        mixed = mixed * factor / norm
    return mixed


@dataclass(frozen=True)
class _CacheReading:
    target: Tensor  # (B, N) the cache's probability of each target
    previous: Tensor  # (B, N) the cache's probability, at each target, of the word just read
    read: Tensor  # (B, N) the number of window words the cache read


def cache_probabilities(rows: Tensor, window: int, decay: float, skip: int = 0) -> _CacheReading:
    """For each target ``rows[:, t + 1]``, from the window of inputs up to ``rows[:, t]`` less the
    ``skip`` newest: the cache's probability of the target and of ``rows[:, t]``, and the count of
    words it read. Ids below 0 are empty places."""
    batch, count = rows.size(0), rows.size(1) - 1
    empty = torch.full((batch, window), -1, dtype=rows.dtype, device=rows.device)
    padded_rows = torch.cat([empty, rows[:, :count]], dim=1)  # (B, W + N)
    ages = torch.arange(window - 1, -1, -1, dtype=torch.float32, device=rows.device)  # (W,) oldest first
    weights = torch.exp(-decay * ages) * (ages >= skip)  # (W,)
    counted = (ages >= skip).float()  # (W,)
    targets, previous, reads = [], [], []
    positions_per_chunk = max(1, WINDOW_ENTRIES_PER_CHUNK // (batch * window))
    for start in range(0, count, positions_per_chunk):
        end = min(count, start + positions_per_chunk)
        windows = padded_rows[:, start + 1 : end + window].unfold(1, window, 1)  # (B, chunk, W), oldest first
        present = (windows >= 0).float()
        total = (present @ weights).clamp(min=1e-30)
        for words, out in ((rows[:, start + 1 : end + 1], targets), (rows[:, start:end], previous)):
            hits = (windows == words.unsqueeze(-1)).float() * present
            out.append(torch.where(total > 1e-30, hits @ weights / total, 0.0))
        reads.append(present @ counted)
    return _CacheReading(torch.cat(targets, dim=1), torch.cat(previous, dim=1), torch.cat(reads, dim=1))
