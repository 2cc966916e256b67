"""Ranking metrics of the skill-extraction literature (Decorte et al. 2022/2023).

Per scored sentence, then averaged over sentences:

* RP@K = |gold ∩ top K| / min(K, |gold|): recall that does not punish a
  sentence for having more gold skills than K slots.
* MRR = 1 / rank of the first gold skill (0 when none is ranked).

Ties are broken by the ranking itself (stable order of the scores array),
so a metric never depends on which of two equal-scored skills "wins".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

KS = (1, 5, 10)


def rp_at_k(ranked: Sequence[int], gold: set[int], k: int) -> float:
    if not gold:
        raise ValueError("a scored sentence needs at least one gold skill")
    hits = sum(1 for idx in ranked[:k] if idx in gold)
    return hits / min(k, len(gold))


def reciprocal_rank(ranked: Sequence[int], gold: set[int]) -> float:
    for position, idx in enumerate(ranked, start=1):
        if idx in gold:
            return 1.0 / position
    return 0.0


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first; ties keep the lower index first.

    ``argpartition`` keeps this fast over 13,896 columns, but it picks arbitrarily among
    scores tied at the k-th place; the rare rows with such a tie are ranked by a full
    stable sort instead, so the result never depends on the partition's choice.
    """
    scores = np.atleast_2d(scores)
    k = min(k, scores.shape[-1])
    part = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=-1)
    order = np.lexsort((part, -part_scores), axis=-1)
    top = np.take_along_axis(part, order, axis=-1)
    kth = part_scores.min(axis=-1, keepdims=True)
    tied = np.flatnonzero((scores >= kth).sum(axis=-1) > k)
    if tied.size:
        top[tied] = np.argsort(-scores[tied], axis=-1, kind="stable")[:, :k]
    return top


def ranks_of_first_gold(scores: np.ndarray, gold: Sequence[set[int]]) -> np.ndarray:
    """1-based rank of the best-ranked gold skill per row (ties counted in the gold's favour of index order)."""
    out = np.empty(len(gold), dtype=np.int64)
    for row, g in enumerate(gold):
        idx = np.fromiter(g, dtype=np.int64)
        s = scores[row]
        best = idx[np.lexsort((idx, -s[idx]))[0]]
        better = np.count_nonzero(s > s[best]) + np.count_nonzero((s == s[best]) & (np.arange(s.shape[0]) < best))
        out[row] = better + 1
    return out


@dataclass
class MetricReport:
    """Per-sentence metric values for one benchmark, plus their means (percent)."""

    per_sentence: dict[str, np.ndarray]
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(next(iter(self.per_sentence.values())))

    def means(self) -> dict[str, float]:
        return {name: float(values.mean() * 100.0) for name, values in self.per_sentence.items()}

    def to_json(self) -> dict:
        out: dict = {name: round(value, 2) for name, value in self.means().items()}
        out["n"] = self.n
        out["ci95"] = {name: [round(lo, 2), round(hi, 2)] for name, (lo, hi) in self.ci95.items()}
        return out


def score_rankings(scores: np.ndarray, gold: Sequence[set[int]], ks: Sequence[int] = KS) -> MetricReport:
    """RP@K for each K and MRR from a (sentences × skills) score matrix."""
    if scores.shape[0] != len(gold):
        raise ValueError("one gold set per score row")
    top = top_k_indices(scores, max(ks))
    per: dict[str, np.ndarray] = {}
    for k in ks:
        per[f"RP@{k}"] = np.array([rp_at_k(top[i].tolist(), gold[i], k) for i in range(len(gold))])
    per["MRR"] = 1.0 / ranks_of_first_gold(scores, gold)
    return MetricReport(per_sentence=per)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, in percent: resamples sentences, the unit of evaluation."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1) * 100.0
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def with_ci(report: MetricReport, n_boot: int = 1000, seed: int = 0) -> MetricReport:
    report.ci95 = {name: bootstrap_ci(vals, n_boot, seed) for name, vals in report.per_sentence.items()}
    return report
