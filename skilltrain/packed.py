"""Sentences as their attended tokens only, end to end: what ranking scores, with no padding.

An encoder pads a batch to its longest sentence, and [CLS]/[SEP] are not
attended: in a padded (n, L, D) tensor a third or more of the positions can
be dead weight. :class:`PackedQueries` keeps only the attended tokens of every
sentence, concatenated (``tokens`` (T, D), ``lengths`` (n,)), plus what the
same forward pass gives for free:

* ``pooled``: the sentence's mean-pooled unit vector (over the same last hidden
  state, with the model's own pooling mask), i.e. exactly what a pooled model
  scores; two-stage ranking takes its candidates with it;
* ``spans`` / ``words``: each token's character offsets in its sentence and its
  word index (word pieces share one), so a skill's most-attended tokens can be
  shown as words of the sentence (evidence).

:meth:`PackedQueries.buckets` groups sentences of equal length into dense
(n_b, L, D) blocks: the kernels (:mod:`skilltrain.kernels`) run on those, so no
work is spent on a padded position.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Sequence, Union

import torch
import torch.nn.functional as F

from skilltrain.scoring import DEFAULT_ATTENTION_TEMPERATURE, TokenQueries, mean_pool


@dataclass(frozen=True)
class Bucket:
    """Sentences of one length: their row numbers and the (n_b, L) indices of their tokens in the packed rows."""

    rows: torch.Tensor
    token_index: torch.Tensor

    @property
    def length(self) -> int:
        return self.token_index.shape[1]


@dataclass
class PackedQueries:
    """Attended token embeddings of n sentences, packed; see the module docstring.

    ``tokens`` (T, D) raw (not normalised); ``lengths`` (n,) int64, each >= 1; ``pooled``
    (n, D) unit or None; ``spans`` (T, 2) int64 character [start, end) or None; ``words``
    (T,) int64 word number within the sentence or None.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    temperature: float = DEFAULT_ATTENTION_TEMPERATURE
    pooled: torch.Tensor | None = None
    spans: torch.Tensor | None = None
    words: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.lengths.shape[0]

    @property
    def starts(self) -> torch.Tensor:
        """(n,) first packed row of each sentence."""
        return torch.cumsum(self.lengths, 0) - self.lengths

    def token_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Packed row numbers of the tokens of sentences ``rows``, sentence after sentence."""
        lengths = self.lengths[rows]
        offsets = torch.repeat_interleave(self.starts[rows] - (torch.cumsum(lengths, 0) - lengths), lengths)
        return torch.arange(int(lengths.sum()), device=lengths.device) + offsets

    def __getitem__(self, rows: slice | torch.Tensor | Sequence[int]) -> "PackedQueries":
        if isinstance(rows, slice) and rows.step in (None, 1):  # consecutive sentences: views, no copy
            first, stop, _ = rows.indices(len(self))
            stop = max(first, stop)
            t0, t1 = int(self.lengths[:first].sum()), int(self.lengths[:stop].sum())
            cut = lambda t: None if t is None else t[t0:t1]  # noqa: E731
            return PackedQueries(self.tokens[t0:t1], self.lengths[first:stop], self.temperature,
                                 None if self.pooled is None else self.pooled[first:stop], cut(self.spans), cut(self.words))
        if isinstance(rows, slice):
            rows = torch.arange(len(self), device=self.lengths.device)[rows]
        rows = torch.as_tensor(rows, dtype=torch.int64, device=self.lengths.device)
        take = self.token_rows(rows)
        pick = lambda t: None if t is None else t[take]  # noqa: E731
        return PackedQueries(self.tokens[take], self.lengths[rows], self.temperature,
                             None if self.pooled is None else self.pooled[rows], pick(self.spans), pick(self.words))

    def with_temperature(self, temperature: float) -> "PackedQueries":
        return replace(self, temperature=temperature)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "PackedQueries":
        """Token and pooled embeddings on ``device`` in ``dtype``; lengths, spans and words stay integers."""
        tokens = self.tokens.to(device=device, dtype=dtype)
        move = lambda t: None if t is None else t.to(tokens.device)  # noqa: E731
        pooled = None if self.pooled is None else self.pooled.to(device=tokens.device, dtype=dtype)
        return PackedQueries(tokens, self.lengths.to(tokens.device), self.temperature, pooled, move(self.spans), move(self.words))

    def buckets(self) -> Iterator[Bucket]:
        """Sentences grouped by length, shortest first (each group indexes dense (n_b, L) token blocks)."""
        starts = self.starts
        for length in torch.unique(self.lengths).tolist():
            rows = torch.nonzero(self.lengths == length).flatten()
            yield Bucket(rows, starts[rows, None] + torch.arange(length, device=rows.device))

    def padded(self) -> TokenQueries:
        """The same sentences as padded :class:`~skilltrain.scoring.TokenQueries` (the reference layout)."""
        n, dim = len(self), self.tokens.shape[1]
        width = int(self.lengths.max()) if n else 1
        mask = torch.arange(width, device=self.lengths.device)[None, :] < self.lengths[:, None]
        tokens = self.tokens.new_zeros((n, width, dim))
        tokens[mask] = self.tokens
        return TokenQueries(tokens, mask, self.temperature)

    @classmethod
    def from_padded(cls, queries: TokenQueries, pooled: torch.Tensor | None = None,
                    spans: torch.Tensor | None = None, words: torch.Tensor | None = None) -> "PackedQueries":
        """Pack padded token queries (row order kept); ``spans`` (n, L, 2) / ``words`` (n, L) padded alike."""
        mask = queries.mask
        return cls(queries.tokens[mask], mask.sum(1).to(torch.int64), queries.temperature, pooled,
                   None if spans is None else spans[mask].to(torch.int64), None if words is None else words[mask].to(torch.int64))

    @classmethod
    def concat(cls, parts: Sequence["PackedQueries"]) -> "PackedQueries":
        """Rows of all parts, in order (nothing to pad)."""
        def cat(name: str):
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else torch.cat(values)

        return cls(cat("tokens"), cat("lengths"), parts[0].temperature, cat("pooled"), cat("spans"), cat("words"))


#: what ranking accepts: pooled unit vectors (n, D), or token attention (padded or packed)
Queries = Union[torch.Tensor, TokenQueries, PackedQueries]


def pack_hidden(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    attended: torch.Tensor,
    temperature: float,
    offsets: torch.Tensor | None = None,
    word_ids: torch.Tensor | None = None,
) -> PackedQueries:
    """One encoder pass, both outputs: the attended tokens packed, and the pooled unit vector.

    ``hidden`` (n, L, D) last hidden state; ``attention_mask`` the tokeniser's (the pooled vector is
    the model's mean pooling, [CLS]/[SEP] included, as :meth:`~skilltrain.model.BiEncoder.encode`
    computes it); ``attended`` (n, L) the tokens a skill attends to; ``offsets`` (n, L, 2) and
    ``word_ids`` (n, L) from a fast tokeniser, when evidence is wanted.
    """
    hidden = hidden.float()
    pooled = F.normalize(mean_pool(hidden, attention_mask), p=2, dim=-1)
    return PackedQueries.from_padded(TokenQueries(hidden, attended, temperature), pooled, offsets, word_ids)


def tokenizer_positions(batch, n_rows: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(offsets (n, L, 2), word ids (n, L), -1 where none) of a fast tokeniser's batch; (None, None) otherwise."""
    offsets = batch.get("offset_mapping")
    if offsets is None or not getattr(batch, "is_fast", False):
        return None, None
    offsets = torch.as_tensor(offsets, dtype=torch.int64)
    words = torch.tensor([[-1 if w is None else w for w in batch.word_ids(i)] for i in range(n_rows)], dtype=torch.int64)
    return offsets, words
