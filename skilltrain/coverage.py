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
* among candidates that include each window's own best skills
  (:func:`window_candidates`: the window's mean token vector against every
  skill, :data:`PER_WINDOW` per window), so a skill that only a part of the
  sentence asks for can be chosen even when the whole sentence's pooled vector
  ranks it far down ("provide mentorship": #703 by the pooled vector, #0-3 by
  the windows on "mentor junior developers");
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
#: candidate skills each window adds to the pool (its best by the window's mean token vector)
PER_WINDOW = 8


def window_starts(length: int, stride: int = STRIDE) -> torch.Tensor:
    """First token of each window of a sentence of ``length`` attended tokens (every ``stride`` tokens, the last flush
    with the end); a sentence no longer than a window has none (its sentence score is its window score)."""
    if length <= WINDOW:
        return torch.zeros(0, dtype=torch.int64)
    starts = list(range(0, length - WINDOW + 1, stride))
    if starts[-1] + WINDOW < length:
        starts.append(length - WINDOW)
    return torch.tensor(starts, dtype=torch.int64)


def window_candidates(queries: PackedQueries, matrix: torch.Tensor, per_window: int = PER_WINDOW) -> torch.Tensor:
    """(n, m) skill rows: the ``per_window`` best skills of each window of each sentence, by the cosine of the window's
    mean token vector (what mean pooling gives for that part of the sentence) with every skill; -1 fills a row whose
    sentence has fewer windows than the longest (no windows at all: the whole sentence is one, -1 throughout).

    The windows do not overlap here (stride :data:`WINDOW`): this is one (windows, D) x (D, S) product against
    every skill, the diverse path's largest cost (overlapping windows doubled it: 19% of the encoder's FLOPs for a
    19-token sentence), and a part of the sentence is still in some window whole or in half.
    """
    per_window = min(per_window, matrix.shape[0])
    found: list[tuple[torch.Tensor, torch.Tensor]] = []
    tokens = queries.tokens.to(matrix.dtype)
    for bucket in queries.buckets():
        starts = window_starts(bucket.length, stride=WINDOW)
        if len(starts):
            positions = (starts[:, None] + torch.arange(WINDOW)).to(tokens.device)
            means = torch.nn.functional.normalize(tokens[bucket.token_index][:, positions].mean(dim=2), dim=-1)
            found.append((bucket.rows, torch.topk(means @ matrix.T, per_window, dim=2).indices.flatten(1)))
    width = max((idx.shape[1] for _, idx in found), default=0)
    out = torch.full((len(queries), width), -1, dtype=torch.int64, device=matrix.device)
    for rows, idx in found:
        out[rows, : idx.shape[1]] = idx
    return out


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
    """(n, min(k, m)) positions into each row of ``coverage`` (n, m) for skills ``idx``, chosen by marginal relevance.

    Only skills within ``strength`` of a row's k-th best coverage can be chosen (the penalty is a cosine clamped to
    [0, 1], and until k are chosen one of the k best is still open), so the (m, m) similarities are computed among
    those alone: exact, and most of the pool drops out at the strengths validation chooses.
    """
    n, m = coverage.shape
    k = min(k, m)
    if k == 0:
        return torch.zeros((n, 0), dtype=torch.int64, device=coverage.device)
    kth = torch.topk(coverage, k, dim=1).values[:, -1:]
    width = int((coverage >= kth - strength).sum(dim=1).max())
    coverage, positions = torch.topk(coverage, width, dim=1)
    vectors = matrix[torch.gather(idx, 1, positions)].float()  # (n, width, D)
    similar = torch.bmm(vectors, vectors.transpose(1, 2)).clamp_(min=0)
    rows = torch.arange(n, device=coverage.device)
    penalty = torch.zeros_like(coverage)
    taken = torch.zeros((n, width), dtype=torch.bool, device=coverage.device)
    chosen = []
    for _ in range(k):
        pick = (coverage - strength * penalty).masked_fill(taken, float("-inf")).argmax(dim=1)
        chosen.append(pick)
        taken[rows, pick] = True
        penalty = torch.maximum(penalty, similar[rows, pick].to(penalty.dtype))
    return torch.gather(positions, 1, torch.stack(chosen, dim=1))
