"""Choose the coverage-aware top-k's default (on or off) and strength on validation, after training.

The coverage-aware top-k (:mod:`skilltrain.coverage`) ranks by a skill's best
part of the sentence and penalises near-synonyms. Plain top-k and each strength
of :data:`STRENGTHS` are scored on the validation sets as extraction ranks
(two-stage with the model's C), on all sentences and on those with two or more
gold skills. The strength is the one with the best mean RP@5 on the multi-gold
sentences (the sentences covering more of the sentence is for; ties: the
weaker); it is what ``diverse=True`` uses. The model ranks coverage-aware by
default only when, at that strength, RP@5 *and* RP@10 over all sentences of
*each* validation set are at least plain top-k's: a default must not cost the
common single-skill sentence, on either benchmark. (The rule first compared the
mean over the sets; with window candidates that mean rose 0.16 RP@5 while TECH
validation RP@5 fell 1.3, and would have turned the default on.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from skilltrain.evaluation.evaluate import Benchmark, EncodedBenchmark, encode_benchmarks, score_encoded
from skilltrain.model import BiEncoder
from skilltrain.ranking import SkillIndex

STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.3)
METRICS = ("RP@5", "RP@10", "MRR")


def coverage_report(index: SkillIndex, encoded: Sequence[EncodedBenchmark], scoring, strength: float | None) -> dict[str, dict[str, float]]:
    """Per set (and per set's multi-gold sentences, ``<set>/2+``): RP@5, RP@10, MRR at ``strength`` (None: plain top-k)."""
    ranked = replace(scoring, diverse=strength is not None, diversity=strength or 0.0)
    out = {}
    for e in encoded:
        report = score_encoded(index, e, ranked)
        multi = np.array([len(g) >= 2 for g in e.gold])
        out[e.name] = {m: float(report.per_sentence[m].mean() * 100) for m in METRICS}
        if multi.any():
            out[f"{e.name}/2+"] = {**{m: float(report.per_sentence[m][multi].mean() * 100) for m in METRICS}, "n": int(multi.sum())}
    return out


def costs_nothing(ranked: dict[str, dict[str, float]], plain: dict[str, dict[str, float]], sets: Sequence[str]) -> bool:
    """Whether a ranking's RP@5 and RP@10 on every set in ``sets`` are at least plain top-k's (the default's bar)."""
    return all(ranked[name][metric] >= plain[name][metric] for name in sets for metric in ("RP@5", "RP@10"))


def choose_diversity(encoder: BiEncoder, skills, benchmarks: Sequence[Benchmark], index: SkillIndex | None = None,
                     strengths: Sequence[float] = STRENGTHS, encoded: Sequence[EncodedBenchmark] | None = None,
                     ) -> tuple[bool, float, dict[float | None, dict]]:
    """Set ``diverse``/``diversity`` on ``encoder.scoring``; returns (on, strength, scores by strength, None = plain)."""
    if not encoder.scoring.token_level:
        raise ValueError("the coverage-aware top-k applies to token-attention models only")
    index = index if index is not None else SkillIndex.build(encoder, skills)
    encoded = encoded if encoded is not None else encode_benchmarks(encoder, index, benchmarks)
    table = {s: coverage_report(index, encoded, encoder.scoring, s) for s in (None, *map(float, strengths))}

    def mean(strength: float | None, metric: str, suffix: str = "") -> float:
        return float(np.mean([table[strength].get(e.name + suffix, table[strength][e.name])[metric] for e in encoded]))

    best = max((s for s in table if s is not None), key=lambda s: (mean(s, "RP@5", "/2+"), -s))
    on = costs_nothing(table[best], table[None], [e.name for e in encoded])
    encoder.scoring = replace(encoder.scoring, diverse=on, diversity=best)
    return on, best, table
