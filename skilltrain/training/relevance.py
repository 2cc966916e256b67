"""``--min-relevance-rank K``: train only on generated sentences whose own skill the start encoder ranks in the top K.

A sentence about another skill than the one it was generated for teaches the model a wrong pair; a cheap
or small generator writes many (BENCHMARKS.md, "Real model data"). Before any worker starts, the start
encoder ranks every skill of the taxonomy for every generated sentence (pooled cosine, whatever scoring the
model then trains with: relevance is a property of the data) and the sentences whose own skill ranks below
K are dropped. The ranks come from skillgen's relevance report (:func:`skillgen.own_skill_ranks`), so
``skillgen report RUN --relevance --model <start encoder dir> --esco <training --esco>`` counts exactly what
this drops (the report ranks the run's own taxonomy unless told otherwise; training ranks its ``--esco``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from skillgen import own_skill_ranks
from skillgen.common import UserError

log = logging.getLogger(__name__)

LINE_CHARS = 300  # the log line names the most-dropped skills that fit
BY_SKILL_KEPT = 50  # the most-dropped skills kept in the fit's data_info (all 13,896 would swell every config file)


@dataclass
class RelevanceDrop:
    """What the filter did: counted in sentences (rows of the run dir) and in skills (by skill id); ``by_skill``
    names the :data:`BY_SKILL_KEPT` most-dropped skills by label, most dropped first."""

    k: int
    model: str
    candidates: int  # skills each sentence's own skill was ranked among
    sentences: int
    dropped: int
    skills: int  # skills with a generated sentence
    skills_hit: int  # skills that lost at least one sentence
    skills_emptied: int  # skills that lost all of them (they leave training)
    by_skill: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        share = 100.0 * self.dropped / self.sentences if self.sentences else 0.0
        line = (f"relevance filter (own skill in the top {self.k} of {self.candidates:,} for {self.model}): dropped "
                f"{self.dropped:,} of {self.sentences:,} sentences ({share:.1f}%) from {self.skills_hit} of {self.skills} "
                f"skills ({self.skills_emptied} lost all)")
        for i, (label, n) in enumerate(self.by_skill.items()):
            more = f"{'; most: ' if i == 0 else ', '}{label} ({n})"
            if len(line) + len(more) > LINE_CHARS:
                break
            line += more
        return line


class RelevanceFilter:
    """Callable on the generated rows (``sentence``, ``label``, ``skill_id``) of
    :func:`skilltrain.training.data.load_pairs`; keeps its :class:`RelevanceDrop` in ``result``."""

    def __init__(self, k: int, model_dir: Path, skills: pl.DataFrame):
        self.k, self.model_dir, self.skills = k, model_dir, skills
        self.result: RelevanceDrop | None = None

    def __call__(self, generated: pl.DataFrame) -> pl.DataFrame:
        ranked = own_skill_ranks(generated["sentence"].to_list(), generated["skill_id"].to_list(), self.skills,
                                 self.model_dir, progress=True)
        unknown = int((ranked.ranks == 0).sum())
        if unknown:
            raise UserError(f"--min-relevance-rank: {unknown} generated sentences belong to skills the taxonomy lacks; "
                            "pass the --esco the run dir was generated from")
        keep = ranked.ranks <= self.k
        if not keep.any():
            raise UserError(f"--min-relevance-rank {self.k}: no generated sentence ranks its own skill in the top "
                            f"{self.k} for {ranked.model}; raise K or check the data with 'skillgen report --relevance'")
        ids, labels = generated["skill_id"].to_list(), generated["label"].to_list()
        lost = Counter(skill for skill, kept in zip(ids, keep) if not kept)
        remaining = Counter(skill for skill, kept in zip(ids, keep) if kept)
        label_of = dict(zip(ids, labels))
        self.result = RelevanceDrop(
            self.k, ranked.model, self.skills.height, len(ids), int((~keep).sum()), len(set(ids)), len(lost),
            sum(1 for skill in lost if not remaining[skill]),
            {label_of[skill]: n for skill, n in lost.most_common(BY_SKILL_KEPT)},
        )
        log.info("%s", self.result.line())
        return generated.filter(pl.Series(keep))
