"""Choose the token-attention temperature on validation, after training.

The attention temperature ``T`` of ``softmax_t(x_t . s / T)`` decides how
sharply a skill focuses on its span of the sentence. The model trains with one
``T``; at inference any ``T`` can be used without retraining, and the best one
is not always the training one. Scoring several ``T`` is cheap: the
validation sentences are encoded once, only the (sentences x tokens x skills)
scoring is repeated per candidate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np

from skilltrain.evaluation.evaluate import Benchmark, EncodedBenchmark, encode_benchmarks, score_encoded
from skilltrain.model import BiEncoder
from skilltrain.ranking import SkillIndex


def rp5_by_temperature(
    encoder: BiEncoder, index: SkillIndex, benchmarks: Sequence[Benchmark], temperatures: Iterable[float],
    encoded: Sequence[EncodedBenchmark] | None = None,
) -> dict[float, float]:
    """Mean validation RP@5 over ``benchmarks`` for each temperature (a token-attention encoder), every skill scored
    by token attention (the exhaustive ranking: C is chosen after the temperature). ``encoded``: the benchmarks
    already encoded by :func:`~skilltrain.evaluation.evaluate.encode_benchmarks`."""
    if not encoder.scoring.token_level:
        raise ValueError("the attention temperature applies to token-attention models only")
    encoded = encoded if encoded is not None else encode_benchmarks(encoder, index, benchmarks)
    out = {}
    for t in temperatures:
        scoring = replace(encoder.scoring, attention_temperature=float(t))
        per_set = [score_encoded(index, replace(e, queries=e.queries.with_temperature(t)), scoring, exhaustive=True).means()["RP@5"]
                   for e in encoded]
        out[float(t)] = float(np.mean(per_set))
    return out


def choose_temperature(
    encoder: BiEncoder, skills, benchmarks: Sequence[Benchmark], temperatures: Iterable[float],
    index: SkillIndex | None = None, encoded: Sequence[EncodedBenchmark] | None = None,
) -> tuple[float, dict[float, float]]:
    """Set the best of ``temperatures`` (and the current one) on ``encoder``; returns (temperature, RP@5 by temperature).

    Ties go to the current (training) temperature, then to the lower one. ``index``: the skill
    embeddings of these weights when already computed (skills are pooled under either scoring,
    so a validation index serves); encoding 13,896 labels is most of this call's cost otherwise.
    """
    current = encoder.scoring.attention_temperature
    tried = sorted(set(float(t) for t in temperatures) | {current})
    index = index if index is not None else SkillIndex.build(encoder, skills)
    scores = rp5_by_temperature(encoder, index, benchmarks, tried, encoded)
    best = max(scores, key=lambda t: (scores[t], t == current, -t))
    encoder.scoring = replace(encoder.scoring, attention_temperature=best)
    return best, scores
