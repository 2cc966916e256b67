"""Choose the candidate count C of two-stage ranking on validation, after training (and after the temperature).

Two-stage ranking takes each sentence's top C skills by the pooled vector of the
same forward pass and re-ranks only those with token attention. A small C is
fast; too small a C drops skills token attention would have ranked high. C is
chosen per model: the smallest C of :data:`CANDIDATE_GRID` from which on every
larger C keeps each validation set's RP@5 and RP@10 within :data:`TOLERANCE`
points of exhaustive token attention (a C that scores higher is fine; requiring
every larger C to pass too keeps one lucky dip from choosing it). When no C
passes, the model keeps ranking exhaustively (C = None). The curve (C against
RP@5 / RP@10) is returned for the record; its speed is measured by
``benchmarks/bench_extract.py``, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from skilltrain.evaluation.evaluate import Benchmark, EncodedBenchmark, encode_benchmarks, score_encoded
from skilltrain.model import BiEncoder
from skilltrain.ranking import SkillIndex

CANDIDATE_GRID = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: RP points two-stage may lose against exhaustive token attention on any validation set and metric
TOLERANCE = 0.1
METRICS = ("RP@5", "RP@10")


@dataclass(frozen=True)
class CurvePoint:
    """Validation metrics per set at one candidate count (None: exhaustive)."""

    candidates: int | None
    scores: dict[str, dict[str, float]]

    def to_json(self) -> dict:
        return {"candidates": self.candidates, **{name: {m: round(v, 2) for m, v in s.items()} for name, s in self.scores.items()}}


def candidate_curve(encoder: BiEncoder, index: SkillIndex, encoded: Sequence[EncodedBenchmark],
                    grid: Sequence[int] = CANDIDATE_GRID) -> list[CurvePoint]:
    """Exhaustive first, then each C of ``grid`` (smaller than the skill count), scored as extraction ranks."""
    points = []
    for c in [None, *sorted(c for c in grid if c < len(index.embeddings))]:
        scoring = replace(encoder.scoring, candidates=c, diverse=False)
        scores = {e.name: {m: v for m, v in score_encoded(index, e, scoring, exhaustive=c is None).means().items() if m in METRICS}
                  for e in encoded}
        points.append(CurvePoint(c, scores))
    return points


def smallest_passing(curve: Sequence[CurvePoint], tolerance: float = TOLERANCE) -> int | None:
    """The smallest C from which on every C of the curve is within ``tolerance`` of exhaustive (None if none)."""
    exhaustive, rest = curve[0].scores, curve[1:]
    passes = [all(p.scores[s][m] >= exhaustive[s][m] - tolerance for s in exhaustive for m in METRICS) for p in rest]
    chosen = None
    for point, ok in zip(reversed(rest), reversed(passes)):
        if not ok:
            break
        chosen = point.candidates
    return chosen


def choose_candidates(encoder: BiEncoder, skills, benchmarks: Sequence[Benchmark], index: SkillIndex | None = None,
                      grid: Sequence[int] = CANDIDATE_GRID, encoded: Sequence[EncodedBenchmark] | None = None,
                      ) -> tuple[int | None, list[CurvePoint]]:
    """Set the chosen C on ``encoder.scoring`` (a token-attention encoder); returns (C, the validation curve)."""
    if not encoder.scoring.token_level:
        raise ValueError("two-stage ranking applies to token-attention models only")
    index = index if index is not None else SkillIndex.build(encoder, skills)
    encoded = encoded if encoded is not None else encode_benchmarks(encoder, index, benchmarks)
    curve = candidate_curve(encoder, index, encoded, grid)
    chosen = smallest_passing(curve)
    encoder.scoring = replace(encoder.scoring, candidates=chosen)
    return chosen, curve
