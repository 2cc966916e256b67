"""RP@5 of an extractor on the TECH/HOUSE benchmarks: how the fast backends are held to fp32's quality.

Scored exactly as ``skilltrain eval`` scores (one benchmark sentence = one
input, ``split=False``; gold labels grouped by
:func:`skilltrain.evaluation.benchmarks.load_benchmark`), but through
:class:`SkillExtractor`, so each backend is measured as users run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from skilltrain.evaluation.benchmarks import SETS, load_benchmark
from skilltrain.evaluation.metrics import rp_at_k
from skilltrain.extraction.extractor import SkillExtractor

#: the most a backend may lose against torch-fp32, in RP@5 points, to be offered at all
MAX_RP5_LOSS = 0.3


def rp_at_5(extractor: SkillExtractor, split: str = "validation", sets: Sequence[str] = SETS,
            directory: str | Path | None = None, exhaustive: bool | None = None, diverse: bool | float | None = None) -> dict[str, float]:
    """RP@5 (in points, 0-100) per benchmark set, ranked as ``extract`` ranks with these ``exhaustive``/``diverse``."""
    known = set(extractor.labels)
    out = {}
    for name in sets:
        bench = load_benchmark(name, split, known, directory)
        ranked = extractor.extract_sentences([s.sentence for s in bench], top_k=5, exhaustive=exhaustive, diverse=diverse)
        scores = [rp_at_k([m.label for m in r.skills], set(s.gold_labels), 5) for r, s in zip(ranked, bench)]
        out[name] = float(np.mean(scores)) * 100
    return out
