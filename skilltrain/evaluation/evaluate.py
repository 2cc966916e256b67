"""RP@K and MRR on the TECH/HOUSE benchmarks, ranking all ESCO skills.

Used three ways: ``skilltrain eval`` (test numbers with bootstrap CIs),
validation during training (rank 0, no CIs), and the pipeline's report.
All go through :class:`~skilltrain.ranking.SkillIndex`, the ranking code
that extraction uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import polars as pl
import torch

from skilltrain.evaluation.benchmarks import SETS, BenchmarkSentence, dropped_gold_labels, group_gold, read_benchmark_rows
from skilltrain.evaluation.metrics import KS, MetricReport, score_rankings, with_ci
from skilltrain.model import BiEncoder
from skilltrain.packed import PackedQueries, Queries
from skilltrain.ranking import SkillIndex, rank_tokens
from skilltrain.scoring import ScoringConfig

#: ranks a coverage-aware ranking re-orders (the metrics read RP@10 at most; MRR below it sees the plain order)
DIVERSE_DEPTH = 10


@dataclass
class Benchmark:
    name: str
    split: str
    sentences: list[BenchmarkSentence]
    dropped_gold: tuple[str, ...] = ()  # gold labels the ranked taxonomy lacks (not scored)


def load_benchmarks(skills: pl.DataFrame, sets: Sequence[str] = SETS, split: str = "test", directory: str | Path | None = None) -> list[Benchmark]:
    known = set(skills["label"].to_list())
    loaded = []
    for name in sets:
        rows = read_benchmark_rows(name, split, directory)
        loaded.append(Benchmark(name, split, group_gold(rows, known), tuple(dropped_gold_labels(rows, known))))
    return loaded


def dropped_gold_note(benchmarks: Sequence[Benchmark]) -> str | None:
    """One line on gold labels missing from the taxonomy (another ESCO version than v1.1.0), or None."""
    parts = [f"{b.name.upper()} {b.split} {len(b.dropped_gold)} (e.g. {b.dropped_gold[0]!r})" for b in benchmarks if b.dropped_gold]
    if not parts:
        return None
    return "note: gold labels not in this taxonomy were dropped from scoring: " + "; ".join(parts) + " (the benchmarks use ESCO v1.1.0 labels)"


@dataclass
class EncodedBenchmark:
    """A benchmark's sentences encoded once (pooled vectors or token queries) and their gold skill rows."""

    name: str
    queries: Queries
    gold: list[set[int]]


def encode_benchmarks(encoder: BiEncoder, index: SkillIndex, benchmarks: Sequence[Benchmark]) -> list[EncodedBenchmark]:
    """Encode each benchmark's sentences once: choosing a temperature, C or the coverage default only re-scores them."""
    label_to_row = {label: i for i, label in enumerate(index.skills["label"].to_list())}
    return [EncodedBenchmark(b.name, encoder.encode_queries([s.sentence for s in b.sentences]),
                             [{label_to_row[g] for g in s.gold_labels} for s in b.sentences]) for b in benchmarks]


def ranking_scores(index: SkillIndex, queries: Queries, scoring: ScoringConfig,
                   exhaustive: bool | None = None, diverse: bool | float | None = None) -> np.ndarray:
    """(n, n_skills) scores whose order is the ranking extraction serves under ``scoring``.

    Token attention: two-stage with the model's C unless ``exhaustive`` (then every skill); coverage-aware
    when ``diverse`` (None: the model's default), in which case the first :data:`DIVERSE_DEPTH` places
    follow the coverage-aware order and the rest the plain one.
    """
    candidates = scoring.ranking_candidates(exhaustive)
    scores = index.scores(queries, candidates)
    strength = scoring.diversity_strength(diverse)
    if strength is not None and isinstance(queries, PackedQueries) and len(queries):
        ranking = rank_tokens(queries, torch.from_numpy(index.embeddings), DIVERSE_DEPTH, candidates, strength)
        places = np.arange(ranking.idx.shape[1], 0, -1, dtype=np.float32) + np.float32(10.0)  # above any score in [-1, 1]
        np.put_along_axis(scores, ranking.idx.numpy(), np.broadcast_to(places, ranking.idx.shape), axis=1)
    return scores


def score_encoded(index: SkillIndex, encoded: EncodedBenchmark, scoring: ScoringConfig,
                  exhaustive: bool | None = None, diverse: bool | float | None = None) -> MetricReport:
    return score_rankings(ranking_scores(index, encoded.queries, scoring, exhaustive, diverse), encoded.gold, KS)


def evaluate_index(encoder: BiEncoder, index: SkillIndex, benchmark: Benchmark, ci: bool = True, n_boot: int = 1000,
                   exhaustive: bool | None = None, diverse: bool | float | None = None) -> MetricReport:
    """Metrics of ``benchmark`` ranked as extraction ranks (two-stage with the model's C; ``exhaustive``/``diverse`` override)."""
    [encoded] = encode_benchmarks(encoder, index, [benchmark])
    report = score_encoded(index, encoded, encoder.scoring, exhaustive, diverse)
    return with_ci(report, n_boot=n_boot) if ci else report


def evaluate(
    encoder: BiEncoder,
    skills: pl.DataFrame,
    benchmarks: Sequence[Benchmark],
    index: SkillIndex | None = None,
    ci: bool = True,
    progress: bool = False,
    exhaustive: bool | None = None,
    diverse: bool | float | None = None,
) -> dict[str, MetricReport]:
    """Scores per benchmark name; builds the skill index unless one is given."""
    if index is None:
        index = SkillIndex.build(encoder, skills, progress=progress)
    return {b.name: evaluate_index(encoder, index, b, ci=ci, exhaustive=exhaustive, diverse=diverse) for b in benchmarks}


def results_json(reports: dict[str, MetricReport]) -> dict:
    return {name: report.to_json() for name, report in reports.items()}


def format_table(
    reports: Mapping[str, MetricReport | dict], title: str = "", baseline: Mapping[str, dict] | None = None
) -> str:
    """Plain-text table (works in Ray job logs) of reports or their saved JSON; with a baseline, adds deltas."""
    metrics = [f"RP@{k}" for k in KS] + ["MRR"]
    head = f"{'set':<8}{'n':>5}" + "".join(f"{m:>18}" for m in metrics)
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for name, report in reports.items():
        scores = report.to_json() if isinstance(report, MetricReport) else report
        cells = []
        for m in metrics:
            cell = f"{scores[m]:.1f}"
            if m in scores.get("ci95", {}):
                lo, hi = scores["ci95"][m]
                cell += f" ±{(hi - lo) / 2:.1f}"
            if baseline and name in baseline and m in baseline[name]:
                cell += f" ({scores[m] - baseline[name][m]:+.1f})"
            cells.append(f"{cell:>18}")
        lines.append(f"{name.upper():<8}{scores['n']:>5}" + "".join(cells))
    return "\n".join(lines)
