"""Evidence: the words of a sentence each extracted skill was found in.

A token-attention score is a sum over the sentence's tokens of
``attention weight x cosine(token, skill)``; each token's term is its part in
the match. Attention alone would point at the wrong words: "PostgreSQL", five
word pieces, held ~15% of the attention of *every* skill in a sentence that also
named Python, while its cosine with "Python (computer programming)" was low. So a token's weight here is its share
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
    sentence's attended tokens. ``spans`` (L, 2) character offsets and ``words`` (L,) word numbers (-1: none)."""
    return evidence_spans([sentence], spans, words, np.array([len(words)]), weights)[0]


def evidence_spans(sentences: list[str], spans: np.ndarray, words: np.ndarray, lengths: np.ndarray,
                   weights: np.ndarray) -> list[list[tuple[Evidence, ...]]]:
    """Per sentence, one tuple of spans per skill, from packed tokens (``lengths`` per sentence) and their (T, k) shares.

    Vectorised over all sentences and skills (words, their weights, the best :data:`MAX_WORDS` and how many of them
    hold :data:`COVERED_SHARE`); only building the few chosen spans is a Python loop.
    """
    k = weights.shape[1]
    sentence_of = np.repeat(np.arange(len(sentences)), lengths)
    keep = (words >= 0) & (spans[:, 1] > spans[:, 0])
    spans, words, weights, sentence_of = spans[keep], words[keep], weights[keep], sentence_of[keep]
    if not len(words):
        return [[()] * k for _ in sentences]
    first = np.flatnonzero(np.r_[True, (words[1:] != words[:-1]) | (sentence_of[1:] != sentence_of[:-1])])
    word_weight = np.add.reduceat(weights, first, axis=0)  # (W, k): a run of tokens of one word of one sentence
    word_start, word_end = spans[first, 0], np.maximum.reduceat(spans[:, 1], first)
    word_number, word_sentence = words[first], sentence_of[first]
    counts = np.bincount(word_sentence, minlength=len(sentences))
    offsets = np.r_[0, np.cumsum(counts)[:-1]]
    slot = np.arange(len(first)) - offsets[word_sentence]
    padded = np.full((len(sentences), max(1, int(counts.max())), k), -1.0)
    padded[word_sentence, slot] = word_weight
    top = np.argsort(-padded, axis=1, kind="stable")[:, :MAX_WORDS]  # (n, <=3, k) word slots, heaviest first
    held = np.cumsum(np.take_along_axis(padded, top, axis=1).clip(min=0), axis=1)
    total = padded.clip(min=0).sum(axis=1, keepdims=True)
    taken = np.minimum((held < COVERED_SHARE * total).sum(axis=1) + 1, np.minimum(counts, MAX_WORDS)[:, None])  # (n, k)
    beyond = np.arange(top.shape[1])[None, :, None] >= taken[:, None, :]
    chosen = np.sort(np.where(beyond, np.iinfo(np.int64).max, top), axis=1).transpose(0, 2, 1).tolist()  # in sentence order
    counts, offsets = counts.tolist(), offsets.tolist()
    out = []
    for n, sentence in enumerate(sentences):
        base, count = offsets[n], counts[n]
        if not count:
            out.append([()] * k)
            continue
        rows = slice(base, base + count)
        words_n = list(zip(word_start[rows].tolist(), word_end[rows].tolist(), word_number[rows].tolist(), word_weight[rows].tolist()))
        out.append([_skill_spans(sentence, [w for w in chosen[n][j] if w < count], words_n, j) for j in range(k)])
    return out


def _skill_spans(sentence: str, chosen: list[int], words: list[tuple], skill: int) -> tuple[Evidence, ...]:
    """Evidence for a skill's ``chosen`` words (slots of ``words``: start, end, number, weights): neighbours merged."""
    out, run = [], [chosen[0]]
    for word in chosen[1:]:
        if words[word][2] == words[run[-1]][2] + 1:
            run.append(word)
        else:
            out.append(_span(sentence, run, words, skill))
            run = [word]
    out.append(_span(sentence, run, words, skill))
    return tuple(sorted(out, key=lambda e: -e.weight))


def _span(sentence: str, run: list[int], words: list[tuple], skill: int) -> Evidence:
    lo, hi = words[run[0]][0], words[run[-1]][1]
    return Evidence(lo, hi, sentence[lo:hi], round(sum(words[w][3][skill] for w in run), 4))
