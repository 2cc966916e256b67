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

from skillgen.common import UserError
from skillgen.common import default_benchmark_dir

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
    csv = base / f"{name}_{split}.csv"
    parquet = csv.with_suffix(".parquet")
    return parquet if parquet.exists() and not csv.exists() else csv


def group_gold(rows: pl.DataFrame, known_labels: set[str]) -> list[BenchmarkSentence]:
    """Apply the grouping rules to span rows (columns ``sentence``, ``label``), keeping file order."""
    kept = rows.filter(
        ~pl.col("label").is_in(list(NON_SKILL_LABELS))
        & pl.col("label").is_in(list(known_labels))
        & pl.col("sentence").str.strip_chars().ne("")
    )
    grouped = kept.group_by("sentence", maintain_order=True).agg(pl.col("label").unique(maintain_order=True))
    return [BenchmarkSentence(s, tuple(labels)) for s, labels in grouped.iter_rows()]


def dropped_gold_labels(rows: pl.DataFrame, known_labels: set[str]) -> list[str]:
    """Distinct gold skill labels of the span rows that the taxonomy being ranked does not have.

    With the bundled ESCO v1.1.0 only HOUSE test's ``plan`` is dropped; another ESCO
    version renames labels, and every dropped one silently shrinks a gold set.
    """
    labels = rows.filter(~pl.col("label").is_in(list(NON_SKILL_LABELS)) & pl.col("label").ne(""))["label"].unique(maintain_order=True)
    return [label for label in labels.to_list() if label not in known_labels]


def read_benchmark_rows(name: str, split: str, directory: str | Path | None = None) -> pl.DataFrame:
    """The span rows (``sentence``, ``label``) of one benchmark file, CSV or Parquet."""
    path = benchmark_path(name, split, directory)
    if not path.exists():
        raise UserError(f"{path}: benchmark file not found (check --benchmark-dir or SKILLS_DATA_DIR)")
    try:
        rows = pl.read_parquet(path).cast(pl.String) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UserError(f"{path}: not a readable {path.suffix.lstrip('.').upper()} file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return rows.select(REQUIRED_COLUMNS).fill_null("")


def load_benchmark(name: str, split: str, known_labels: set[str], directory: str | Path | None = None) -> list[BenchmarkSentence]:
    return group_gold(read_benchmark_rows(name, split, directory), known_labels)
