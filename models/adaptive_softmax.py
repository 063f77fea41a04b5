"""Adaptive softmax (Grave et al. 2017): a decoder several times cheaper than a full (H, V) one.

Word ids run by falling frequency (``models.vocab``), so the frequent words
come first. The head scores the ``cutoffs[0]`` most frequent words plus one
entry per tail cluster; cluster i scores the words from ``cutoffs[i]`` to the
next cutoff from a projection of the hidden vector to ``H / div_value**(i+1)``
dimensions, so rare words cost far fewer multiply-adds than frequent ones::

    log p(word) = log p_head(word)                          word in the head
    log p(word) = log p_head(cluster i) + log p_i(word)     word in cluster i

``forward`` returns the full (..., V) log-probabilities: they are valid logits
(softmax gives the probabilities back), so training, evaluation and serving
use it exactly as they use a full decoder. Training calls ``loss`` instead,
which scores each position only in its target's cluster: that is where the
saving is.

``AdaptiveInput`` (Baevski & Auli 2019) is the matching embedding, tied to
the softmax's weights as a full decoder is tied to a full embedding: a head
word's input vector is its output row, and a clustered word's is its output
row (in the cluster's small dimension) projected back up by the cluster's
projection. Usage::

    decoder = AdaptiveSoftmax(hidden_size=200, vocab_size=16_965, cutoffs=[2_000, 6_000])
    embedding = AdaptiveInput(decoder)  # optional: tied input vectors, (B, T) ids -> (B, T, H)
    log_probs = decoder(hidden)  # (B, T, H) -> (B, T, V)
    loss = decoder.loss(hidden.reshape(-1, 200), targets.reshape(-1))  # mean negative log-likelihood
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _Cluster(nn.Module):
    """One tail cluster: (..., H) -> (..., size) logits through a (d, H) projection."""

    def __init__(self, hidden_size: int, projection: int, size: int) -> None:
        super().__init__()
        self.projection = nn.Parameter(torch.empty(projection, hidden_size))  # (d, H)
        self.weight = nn.Parameter(torch.empty(size, projection))  # (size, d)
        self.bias = nn.Parameter(torch.zeros(size))
        nn.init.uniform_(self.projection, -0.1, 0.1)
        nn.init.uniform_(self.weight, -0.1, 0.1)

    def forward(self, hidden: Tensor) -> Tensor:
        return nn.functional.linear(nn.functional.linear(hidden, self.projection), self.weight, self.bias)


class AdaptiveSoftmax(nn.Module):
    def __init__(self, hidden_size: int, vocab_size: int, cutoffs: list[int], div_value: float = 4.0) -> None:
        super().__init__()
        # Cutoffs at or past the vocabulary's end (a small vocabulary) leave no cluster.
        edges = [c for c in sorted(set(cutoffs)) if 0 < c < vocab_size] + [vocab_size]
        self.edges = edges  # cluster i holds the ids edges[i] to edges[i + 1] - 1
        self.shortlist = edges[0]
        self.head = nn.Linear(hidden_size, self.shortlist + len(edges) - 1)  # head words, then one row a cluster
        nn.init.uniform_(self.head.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)
        self.tails = nn.ModuleList(
            [
                _Cluster(hidden_size, max(1, int(hidden_size // div_value ** (i + 1))), edges[i + 1] - edges[i])
                for i in range(len(edges) - 1)
            ]
        )

    def forward(self, hidden: Tensor) -> Tensor:
        """(..., H) -> (..., V) log-probabilities."""
        head = self.head(hidden).log_softmax(-1)  # (..., shortlist + clusters)
        parts = [head[..., : self.shortlist]]
        for i, tail in enumerate(self.tails):
            cluster = head[..., self.shortlist + i : self.shortlist + i + 1]  # (..., 1)
            parts.append(tail(hidden).log_softmax(-1) + cluster)
        return torch.cat(parts, -1)

    def loss(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Mean negative log-likelihood of (N,) targets after (N, H) hidden vectors."""
        head = self.head(hidden).log_softmax(-1)  # (N, shortlist + clusters)
        head_index = targets.clone()  # a head word's own entry, else its cluster's
        total = hidden.new_zeros(())
        for i, tail in enumerate(self.tails):
            low, high = self.edges[i], self.edges[i + 1]
            rows = ((targets >= low) & (targets < high)).nonzero().squeeze(1)  # (n,)
            if rows.numel() == 0:
                continue
            head_index[rows] = self.shortlist + i
            in_cluster = tail(hidden[rows]).log_softmax(-1)  # (n, high - low)
            total = total - in_cluster.gather(1, (targets[rows] - low).unsqueeze(1)).sum()
        total = total - head.gather(1, head_index.unsqueeze(1)).sum()
        return total / targets.numel()


class _ClusterInput(nn.Module):
    """A cluster's input vectors: its output rows (size, d) projected up by its (d, H) projection."""

    def __init__(self, cluster: _Cluster) -> None:
        super().__init__()
        self.projection = cluster.projection  # shared parameters: tied
        self.weight = cluster.weight

    def forward(self, ids: Tensor) -> Tensor:
        """(n,) ids inside the cluster -> (n, H)."""
        return self.weight.index_select(0, ids) @ self.projection


class AdaptiveInput(nn.Module):
    """(B, T) ids -> (B, T, H) input vectors, tied to an ``AdaptiveSoftmax``'s weights."""

    def __init__(self, decoder: AdaptiveSoftmax) -> None:
        super().__init__()
        self.edges = decoder.edges
        self.shortlist = decoder.shortlist
        self.head_words = decoder.head.weight  # (shortlist + clusters, H); rows past the shortlist are not words
        self.clusters = nn.ModuleList([_ClusterInput(tail) for tail in decoder.tails])

    def forward(self, ids: Tensor) -> Tensor:
        flat = ids.reshape(-1)  # (N,)
        head = flat < self.shortlist
        out = self.head_words.index_select(0, torch.where(head, flat, 0))  # (N, H); clustered rows overwritten
        for i, cluster in enumerate(self.clusters):
            low, high = self.edges[i], self.edges[i + 1]
            rows = ((flat >= low) & (flat < high)).nonzero().squeeze(1)  # (n,)
            if rows.numel() > 0:
                out = out.index_copy(0, rows, cluster(flat.index_select(0, rows) - low))
        return out.view(ids.shape[0], ids.shape[1], -1)
