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

import polars as pl

from skilltrain.evaluation.benchmarks import SETS, BenchmarkSentence, dropped_gold_labels, group_gold, read_benchmark_rows
from skilltrain.evaluation.metrics import KS, MetricReport, score_rankings, with_ci
from skilltrain.model import BiEncoder
from skilltrain.ranking import SkillIndex


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


def evaluate_index(encoder: BiEncoder, index: SkillIndex, benchmark: Benchmark, ci: bool = True, n_boot: int = 1000) -> MetricReport:
    label_to_row = {label: i for i, label in enumerate(index.skills["label"].to_list())}
    gold = [{label_to_row[g] for g in s.gold_labels} for s in benchmark.sentences]
    queries = encoder.encode_queries([s.sentence for s in benchmark.sentences])  # pooled vectors or token queries
    report = score_rankings(index.scores(queries), gold, KS)
    return with_ci(report, n_boot=n_boot) if ci else report


def evaluate(
    encoder: BiEncoder,
    skills: pl.DataFrame,
    benchmarks: Sequence[Benchmark],
    index: SkillIndex | None = None,
    ci: bool = True,
    progress: bool = False,
) -> dict[str, MetricReport]:
    """Scores per benchmark name; builds the skill index unless one is given."""
    if index is None:
        index = SkillIndex.build(encoder, skills, progress=progress)
    return {b.name: evaluate_index(encoder, index, b, ci=ci) for b in benchmarks}


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
