"""The completion-length model: how many completion tokens a sentence takes, so ``max_tokens`` can be tight.

The rate limiter debits ``max_tokens`` per request (as OpenAI-style limiters
do), so a loose ceiling wastes the token budget on tokens never generated.
:class:`LengthModel` keeps a running high quantile of completion tokens per
sentence over the answers so far; workers size ``max_tokens`` from it
(:func:`skillgen.llm.tokens.size_max_tokens`) once it has seen enough answers.
"""

from __future__ import annotations

import bisect
import math

from skillgen.llm.tokens import size_max_tokens

__all__ = ["LengthModel"]


class LengthModel:
    """Running quantile of completion tokens per sentence (bounded reservoir that keeps the tails)."""

    def __init__(self, quantile: float = 0.995, min_samples: int = 20, keep: int = 4096):
        self.quantile = quantile
        self.min_samples = min_samples
        self.keep = keep
        self.sorted: list[float] = []
        self.n = 0

    def add(self, completion_tokens: int, sentences_requested: int) -> None:
        if sentences_requested <= 0 or completion_tokens <= 0:
            return
        self.n += 1
        bisect.insort(self.sorted, completion_tokens / sentences_requested)
        if len(self.sorted) > self.keep:  # drop from the middle-ish to keep the tails
            del self.sorted[len(self.sorted) // 2]

    def per_sentence(self) -> float | None:
        """The quantile, or None before ``min_samples`` answers (then workers send the ceiling)."""
        if self.n < self.min_samples:
            return None
        i = min(len(self.sorted) - 1, math.ceil(self.quantile * len(self.sorted)) - 1)
        return self.sorted[max(0, i)]

    def max_tokens_for(self, sentences: int, ceiling: int, margin: float = 1.15) -> int:
        return size_max_tokens(self.per_sentence(), sentences, ceiling, margin)
