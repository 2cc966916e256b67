"""The TECH and HOUSE skill-extraction benchmarks (Decorte et al. 2022).

Rows are annotated spans; a sentence's gold set is its distinct ESCO labels
after dropping ``UNDERSPECIFIED`` / ``LABEL NOT PRESENT`` and labels that are
not in the taxonomy being ranked. Sentences left with no gold are not scored,
which is how the published numbers were computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from skillgen.common.errors import UserError
from skillgen.common.paths import default_benchmark_dir

SETS = ("tech", "house")
SPLITS = ("validation", "test")
NON_SKILL_LABELS = ("UNDERSPECIFIED", "LABEL NOT PRESENT")
REQUIRED_COLUMNS = ("sentence", "label")


@dataclass(frozen=True)
class BenchmarkSentence:
    sentence: str
    gold_labels: tuple[str, ...]


def benchmark_path(name: str, split: str, directory: str | Path | None = None) -> Path:
    if name not in SETS:
        raise UserError(f"unknown benchmark set '{name}' (choose from {', '.join(SETS)})")
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    base = Path(directory) if directory is not None else default_benchmark_dir()
    return base / f"{name}_{split}.csv"


def group_gold(rows: pl.DataFrame, known_labels: set[str]) -> list[BenchmarkSentence]:
    """Apply the grouping rules to span rows (columns ``sentence``, ``label``), keeping file order."""
    kept = rows.filter(
        ~pl.col("label").is_in(list(NON_SKILL_LABELS))
        & pl.col("label").is_in(list(known_labels))
        & pl.col("sentence").str.strip_chars().ne("")
    )
    grouped = kept.group_by("sentence", maintain_order=True).agg(pl.col("label").unique(maintain_order=True))
    return [BenchmarkSentence(s, tuple(labels)) for s, labels in grouped.iter_rows()]


def load_benchmark(name: str, split: str, known_labels: set[str], directory: str | Path | None = None) -> list[BenchmarkSentence]:
    path = benchmark_path(name, split, directory)
    if not path.exists():
        raise UserError(f"{path}: benchmark file not found (set SKILLS_DATA_DIR or --benchmark-dir)")
    try:
        rows = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return group_gold(rows.select(REQUIRED_COLUMNS).fill_null(""), known_labels)
