"""Evidence: the words of a sentence each extracted skill was found in.

A token-attention score is a sum over the sentence's tokens of
``attention weight x cosine(token, skill)``; each token's term is its part in
the match. Attention alone would point at the wrong words: its weights follow
the tokens' norms, so a long word like "PostgreSQL" held 15% of the attention of
*every* skill in a sentence that also named Python, while its cosine with
"Python (computer programming)" was low. So a token's weight here is its share
of the score's positive terms (:func:`skilltrain.kernels.score_shares`).

Each skill gets a few spans: word pieces are merged into whole words (the
tokeniser's word ids), words are taken by weight until they hold half of it (at
most :data:`MAX_WORDS`), and neighbouring chosen words become one span. Offsets
are characters of the sentence string (``sentence[start:end] == text``), from
the fast tokeniser's offset mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: words per skill at most
MAX_WORDS = 3
#: words are taken, best first, until they hold this share of the skill's attention
COVERED_SHARE = 0.5


@dataclass(frozen=True)
class Evidence:
    """A span of the sentence a skill was found in: ``sentence[start:end] == text``; ``weight`` its share of the skill's score."""

    start: int
    end: int
    text: str
    weight: float


def sentence_evidence(sentence: str, spans: np.ndarray, words: np.ndarray, weights: np.ndarray) -> list[tuple[Evidence, ...]]:
    """One tuple of spans per skill (column of ``weights`` (L, k): token shares of the score), heaviest first, for one
    sentence's attended tokens.

    ``spans`` (L, 2) character offsets and ``words`` (L,) word numbers of the tokens (-1: none, e.g. a special token).
    """
    keep = (words >= 0) & (spans[:, 1] > spans[:, 0])
    if not keep.any():
        return [()] * weights.shape[1]
    spans, words, weights = spans[keep], words[keep], weights[keep]
    first = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])  # tokens come in word order: runs are words
    word_weight = np.add.reduceat(weights, first, axis=0)  # (W, k)
    word_start = spans[first, 0]
    word_end = np.maximum.reduceat(spans[:, 1], first)
    word_number = words[first]
    return [_skill_spans(sentence, word_weight[:, j], word_start, word_end, word_number) for j in range(weights.shape[1])]


def _skill_spans(sentence: str, weight: np.ndarray, start: np.ndarray, end: np.ndarray, number: np.ndarray) -> tuple[Evidence, ...]:
    order = np.argsort(-weight, kind="stable")[:MAX_WORDS]
    held = np.cumsum(weight[order])
    total = float(weight.sum()) or 1.0
    chosen = np.sort(order[: int(np.searchsorted(held, COVERED_SHARE * total)) + 1])
    out, run = [], [chosen[0]]
    for word in chosen[1:]:
        if number[word] == number[run[-1]] + 1:
            run.append(word)
        else:
            out.append(_span(sentence, run, weight, start, end))
            run = [word]
    out.append(_span(sentence, run, weight, start, end))
    return tuple(sorted(out, key=lambda e: -e.weight))


def _span(sentence: str, run: list, weight: np.ndarray, start: np.ndarray, end: np.ndarray) -> Evidence:
    lo, hi = int(start[run[0]]), int(end[run[-1]])
    return Evidence(lo, hi, sentence[lo:hi], round(float(weight[run].sum()), 4))
