"""Coverage-aware top-k: prefer skills found in different parts of the sentence.

A job-ad sentence often asks for several things ("build ETL pipelines in
Python and Spark, maintain our PostgreSQL databases and mentor junior
developers"). Plain top-k spent all five places on pipeline and database
skills there. Two reasons, both measured on the main job's model:

* the sentence score dilutes a skill that matches a few words: a word cut
  into many pieces ("PostgreSQL": five) and high-norm tokens ("pipeline": 12.4
  against 4-6 for most) take a large share of *every* skill's attention
  (mentoring skills scored 0.16 against 0.36 for the best, rank ~90);
* near-synonyms ("use databases", "database", "search databases") all score high.

So the coverage-aware top-k ranks the best ``pool`` skills by

* a **coverage score**: the mean of the sentence score and the better of it and
  the skill's best *window* score (token attention over each run of :data:`WINDOW` consecutive
  attended tokens, stride :data:`STRIDE`: the same token embeddings and only the
  pool's skills, so it costs little); a skill that matches a part of the sentence
  well is not drowned by the rest;
* greedily, with maximal marginal relevance: the next skill maximises
  ``coverage(s) - strength * max_j cos(s, j)`` over the skills ``j`` already
  chosen (``cos`` of the skills' label embeddings: near-synonyms are penalised).

(The attention distributions themselves were tried as the overlap measure first;
they overlap heavily for every pair of skills, for the reason above, and did not
move any skill into the example's top 5.) Each skill keeps its
sentence score; only the order changes. Strength 0 keeps the coverage score
without the penalty. The default (on or off) and the strength are chosen on
TECH/HOUSE validation (:mod:`skilltrain.evaluation.diversity`).
"""

from __future__ import annotations

import torch

from skilltrain.packed import PackedQueries

#: attended tokens per window, and the step between windows
WINDOW = 4
STRIDE = 2


def window_starts(length: int) -> torch.Tensor:
    """First token of each window of a sentence of ``length`` attended tokens (stride :data:`STRIDE`, the last flush
    with the end); a sentence no longer than a window has none (its sentence score is its window score)."""
    if length <= WINDOW:
        return torch.zeros(0, dtype=torch.int64)
    starts = list(range(0, length - WINDOW + 1, STRIDE))
    if starts[-1] + WINDOW < length:
        starts.append(length - WINDOW)
    return torch.tensor(starts, dtype=torch.int64)


def coverage_scores(queries: PackedQueries, matrix: torch.Tensor, idx: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """(n, m): the mean of each skill's sentence score (``scores``, for skills ``idx``) and the better of that and
    its best window score (so a window can only raise a skill).

    Per length bucket: one batched product of the sentences' tokens with their m skills, then the token-attention
    score of every window (the same windows for every sentence of the bucket) from views of that product.
    """
    best = scores.clone()
    tokens = queries.tokens.to(matrix.dtype)
    for bucket in queries.buckets():
        starts = window_starts(bucket.length)
        if not len(starts):
            continue
        x = tokens[bucket.token_index]  # (n_b, L, D)
        dots = torch.bmm(x, matrix[idx[bucket.rows]].transpose(1, 2)).float()  # (n_b, L, m)
        cos = dots / x.float().norm(dim=-1, keepdim=True).clamp(min=1e-6)
        positions = (starts[:, None] + torch.arange(WINDOW)).to(dots.device)  # (windows, W)
        weights = torch.softmax(dots[:, positions] / queries.temperature, dim=2)  # (n_b, windows, W, m)
        per_window = (weights * cos[:, positions]).sum(dim=2)  # (n_b, windows, m)
        best[bucket.rows] = torch.maximum(best[bucket.rows], per_window.amax(dim=1).to(best.dtype))
    return (scores + best) / 2


def diverse_order(coverage: torch.Tensor, matrix: torch.Tensor, idx: torch.Tensor, k: int, strength: float) -> torch.Tensor:
    """(n, min(k, m)) positions into each row of ``coverage`` (n, m) for skills ``idx``, chosen by marginal relevance."""
    n, m = coverage.shape
    vectors = matrix[idx].float()  # (n, m, D)
    similar = torch.bmm(vectors, vectors.transpose(1, 2)).clamp_(min=0)
    rows = torch.arange(n, device=coverage.device)
    penalty = torch.zeros_like(coverage)
    taken = torch.zeros((n, m), dtype=torch.bool, device=coverage.device)
    chosen = []
    for _ in range(min(k, m)):
        pick = (coverage - strength * penalty).masked_fill(taken, float("-inf")).argmax(dim=1)
        chosen.append(pick)
        taken[rows, pick] = True
        penalty = torch.maximum(penalty, similar[rows, pick].to(penalty.dtype))
    return torch.stack(chosen, dim=1) if chosen else torch.zeros((n, 0), dtype=torch.int64, device=coverage.device)
