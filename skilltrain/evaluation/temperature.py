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

from skilltrain.evaluation.evaluate import Benchmark
from skilltrain.evaluation.metrics import KS, score_rankings
from skilltrain.model import BiEncoder
from skilltrain.ranking import SkillIndex


def rp5_by_temperature(
    encoder: BiEncoder, index: SkillIndex, benchmarks: Sequence[Benchmark], temperatures: Iterable[float]
) -> dict[float, float]:
    """Mean validation RP@5 over ``benchmarks`` for each temperature (a token-attention encoder)."""
    if not encoder.scoring.token_level:
        raise ValueError("the attention temperature applies to token-attention models only")
    label_to_row = {label: i for i, label in enumerate(index.skills["label"].to_list())}
    encoded = []
    for b in benchmarks:
        gold = [{label_to_row[g] for g in s.gold_labels} for s in b.sentences]
        encoded.append((encoder.encode_queries([s.sentence for s in b.sentences]), gold))
    out = {}
    for t in temperatures:
        per_set = [score_rankings(index.scores(q.with_temperature(t)), gold, KS).means()["RP@5"] for q, gold in encoded]
        out[float(t)] = float(np.mean(per_set))
    return out


def choose_temperature(
    encoder: BiEncoder, skills, benchmarks: Sequence[Benchmark], temperatures: Iterable[float],
    index: SkillIndex | None = None,
) -> tuple[float, dict[float, float]]:
    """Set the best of ``temperatures`` (and the current one) on ``encoder``; returns (temperature, RP@5 by temperature).

    Ties go to the current (training) temperature, then to the lower one. ``index``: the skill
    embeddings of these weights when already computed (skills are pooled under either scoring,
    so a validation index serves); encoding 13,896 labels is most of this call's cost otherwise.
    """
    current = encoder.scoring.attention_temperature
    candidates = sorted(set(float(t) for t in temperatures) | {current})
    index = index if index is not None else SkillIndex.build(encoder, skills)
    scores = rp5_by_temperature(encoder, index, benchmarks, candidates)
    best = max(scores, key=lambda t: (scores[t], t == current, -t))
    encoder.scoring = replace(encoder.scoring, attention_temperature=best)
    return best, scores
