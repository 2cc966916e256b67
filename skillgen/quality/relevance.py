"""Is each sentence about its own skill? The rank of a sentence's own skill among all skills, for an encoder.

Fluency, diversity and label copies (:mod:`skillgen.quality.metrics`) cannot see a sentence that is well
written but about another skill, and such a sentence teaches the model a wrong pair: a 300-skill SmolLM2
run whose sentences ranked their own skill first only 24% of the time (79% for the simulator's) trained a
model 4-6 RP@5 points worse (BENCHMARKS.md, "Real model data"). So an encoder (:mod:`.encoder`; by default
the bundled all-MiniLM-L6-v2, the main job's start encoder) ranks every skill of the taxonomy for every
sentence by pooled cosine, the skill side being its label as ``skilltrain`` ranks, and the rank of the
sentence's own skill (1 = first) is kept.

It lives in skillgen, not skilltrain, so ``skillgen report --relevance`` judges a generator's data before
any training; ``skilltrain fit --min-relevance-rank`` calls the same :func:`own_skill_ranks` (exported by
the ``skillgen`` package), so what the report counts is what the filter drops.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from skillgen.common.errors import UserError
from skillgen.quality.encoder import ProgressBar, load_encoder, skill_embeddings

if TYPE_CHECKING:
    import polars as pl

__all__ = ["OwnRanks", "RelevanceReport", "SkillRelevance", "least_relevant", "own_skill_ranks", "rank_own",
           "relevance_report"]

RANK_CHUNK = 1024  # sentences scored per matmul: a 1024 x 13,896 float32 block (~57 MB)


@dataclass(frozen=True)
class OwnRanks:
    """Per sentence: the 1-based rank of its own skill among all skills, and the row (in the skills frame) of
    the skill ranked first. A sentence whose skill the taxonomy lacks has rank 0: not ranked."""

    ranks: np.ndarray
    best: np.ndarray
    model: str


def rank_own(sentence_emb: np.ndarray, skill_emb: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, best) for unit vectors: rank = 1 + the skills scoring strictly higher than the own one."""
    import torch

    skills = torch.from_numpy(skill_emb).T.contiguous()
    ranks = np.zeros(len(own), dtype=np.int64)
    best = np.zeros(len(own), dtype=np.int64)
    for start in range(0, len(own), RANK_CHUNK):
        block = slice(start, start + RANK_CHUNK)
        scores = torch.from_numpy(np.ascontiguousarray(sentence_emb[block])) @ skills
        own_scores = scores.gather(1, torch.from_numpy(own[block]).clamp(min=0).unsqueeze(1))
        ranks[block] = ((scores > own_scores).sum(1) + 1).numpy()
        best[block] = scores.argmax(1).numpy()
    ranks[own < 0] = 0
    return ranks, best


def own_skill_ranks(sentences: Sequence[str], skill_ids: Sequence[str], skills: "pl.DataFrame",
                    model: str | Path | None = None, progress: bool = False) -> OwnRanks:
    """Rank every skill of ``skills`` (a :func:`skillgen.common.load_skills` frame) for each sentence and keep
    its own skill's rank. ``model``: an encoder dir (None: the bundled MiniLM); ``progress``: a bar on stderr."""
    encoder = load_encoder(Path(model).expanduser() if model is not None else None)
    position = {s: i for i, s in enumerate(skills["skill_id"].to_list())}
    own = np.array([position.get(s, -1) for s in skill_ids], dtype=np.int64)
    unique = sorted(set(sentences))  # generated data repeats sentences: each is encoded once
    index = {s: i for i, s in enumerate(unique)}
    where = np.array([index[s] for s in sentences], dtype=np.int64)
    labels = skills["label"].to_list()
    with ProgressBar(progress, len(labels) + len(unique)) as bar:
        skill_emb = skill_embeddings(encoder, labels, bar.advance)
        bar.advance(len(labels) - bar.done)  # a cache hit encoded nothing
        sentence_emb = encoder.encode(unique, bar.advance)[where]
    ranks, best = rank_own(sentence_emb, skill_emb, own)
    return OwnRanks(ranks, best, encoder.name)


@dataclass
class SkillRelevance:
    """One skill's sentences as the encoder sees them; ``samples``: sentence, its own rank, the label ranked first."""

    skill_id: str
    label: str
    sentences: int
    median_rank: float
    top1_pct: float
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RelevanceReport:
    run_dir: str
    model: str
    sentences: int  # ranked sentences
    skills: int  # skills with a ranked sentence
    candidates: int  # skills in the taxonomy: what each sentence's own skill is ranked among
    unranked: int  # sentences of skills the taxonomy lacks
    top1_pct: float
    top5_pct: float
    top10_pct: float
    median_rank: float
    least_relevant: list[SkillRelevance] = field(default_factory=list)
    seconds: float = 0.0

    def headline(self) -> dict[str, Any]:
        return {"own_skill_top1_%": self.top1_pct, "own_skill_top5_%": self.top5_pct,
                "own_skill_top10_%": self.top10_pct, "median_rank": self.median_rank}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "headline": self.headline()}

    def line(self) -> str:
        """One sentence for a report: the shares and the median, with what was ranked against what."""
        return (f"Relevance ({self.model}, pooled cosine; {self.sentences:,} sentences, each ranked among "
                f"{self.candidates:,} skills): own skill first for {self.top1_pct}%, in the top 5 for "
                f"{self.top5_pct}%, top 10 for {self.top10_pct}%; median rank {self.median_rank:g}.")

    def format(self) -> str:
        lines = [f"relevance of {self.run_dir} ({self.seconds:.1f} s)", "  " + self.line()]
        if self.unranked:
            lines.append(f"  {self.unranked} sentences not ranked: their skill is not in the taxonomy (pass --esco)")
        lines.append(f"  least relevant skills (of {self.skills}; median rank of their own skill, share ranked first):")
        for s in self.least_relevant:
            lines.append(f"    [{s.label}] median rank {s.median_rank:g}, first {s.top1_pct}% of {s.sentences}")
            lines += [f"      rank {p['rank']:>5} (first: {p['first']}) {p['sentence']}" for p in s.samples]
        return "\n".join(lines)


def relevance_report(run_dir: str | Path, model: str | Path | None = None, esco: str | Path | None = None,
                     worst: int = 10, samples: int = 3, progress: bool = False) -> RelevanceReport:
    """Rank a run dir's sentences (a path or URI) among the skills of ``esco`` (default: the run's taxonomy)."""
    import polars as pl

    from skillgen.common.taxonomy import load_skills
    from skillgen.rundir.runstate import read_run_json
    from skillgen.rundir.sinks import read_rows

    started = time.perf_counter()
    if esco is None:
        esco = ((read_run_json(run_dir) or {}).get("config") or {}).get("esco")
    skills = load_skills(esco)
    rows = read_rows(run_dir).select("skill_id", "label", "sentence", "sample_idx")
    if not rows.height:
        raise UserError(f"{run_dir}: no sentences to rank (has generation run?)")
    ranked = own_skill_ranks(rows["sentence"].to_list(), rows["skill_id"].to_list(), skills, model, progress)
    labels = skills["label"].to_list()
    rows = rows.with_columns(rank=pl.Series(ranked.ranks),
                             first=pl.Series([labels[i] for i in ranked.best], dtype=pl.String))
    unranked = int((rows["rank"] == 0).sum())
    if unranked == rows.height:
        raise UserError(f"{run_dir}: none of its {rows['skill_id'].n_unique()} skills is in the taxonomy ranked "
                        f"({esco or 'the bundled ESCO'}); pass the --esco it was generated from")
    rows = rows.filter(pl.col("rank") > 0)
    ranks = rows["rank"].to_numpy()

    def pct(k: int) -> float:
        return round(100.0 * float((ranks <= k).mean()), 2) if len(ranks) else 0.0

    report = RelevanceReport(
        str(run_dir), ranked.model, rows.height, rows["skill_id"].n_unique(), skills.height, unranked,
        pct(1), pct(5), pct(10), float(np.median(ranks)) if len(ranks) else 0.0, least_relevant(rows, worst, samples),
    )
    report.seconds = round(time.perf_counter() - started, 1)
    return report


def least_relevant(rows: "pl.DataFrame", worst: int, samples: int) -> list[SkillRelevance]:
    """The ``worst`` skills by the median rank of their own skill (then the share ranked first), each with its
    first ``samples`` sentences by sample index."""
    import polars as pl

    per_skill = (rows.group_by("skill_id", "label")
                 .agg(sentences=pl.len(), median_rank=pl.col("rank").median(),
                      top1_pct=(100.0 * (pl.col("rank") == 1).mean()).round(1))
                 .sort(["median_rank", "top1_pct", "skill_id"], descending=[True, False, False])
                 .head(worst))
    out = []
    for skill in per_skill.iter_rows(named=True):
        mine = rows.filter(pl.col("skill_id") == skill["skill_id"]).sort("sample_idx").head(samples)
        picks = mine.select("sentence", "rank", "first").to_dicts()
        out.append(SkillRelevance(skill["skill_id"], skill["label"], skill["sentences"], float(skill["median_rank"]),
                                  float(skill["top1_pct"]), picks))
    return out
