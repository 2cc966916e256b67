"""Training pairs: (sentence, skill label) rows from a generation run dir.

Shards are scanned lazily with Polars (only the three needed columns are
read), optionally extended with pairs from the taxonomy itself (alternative
label -> label, description -> label), deduplicated, and put in a canonical
order so the result does not depend on shard file order; shuffling happens per
epoch in :mod:`skilltrain.training.sampler`, from the seed.

Every pair gets ``cls``: the integer id of its target label. The label text is
what the model embeds as the positive, so two pairs with the same label are
the same class, whatever their ``skill_id`` says. Bad input raises
:class:`UserError` with one line, before any worker starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import polars as pl

from skillgen.common import PART_GLOB, ROWS_DIR, UserError
from skillgen.common import is_uri, polars_storage_options, resolve, shard_files

REQUIRED = {"skill_id": pl.String, "label": pl.String, "sentence": pl.String}
PAIR_COLUMNS = ["sentence", "label", "skill_id", "source", "cls"]


def shard_paths(run_dir: str | Path) -> list[str]:
    """The run dir's shard files (paths, or URIs on object storage), checked to exist."""
    where = resolve(Path(run_dir).expanduser() if not is_uri(str(run_dir)) else run_dir, "--data")
    try:
        found = where.exists()
        is_file = found and where.is_file()
        shards = [] if not found or is_file else shard_files(where)
    except OSError as exc:
        raise UserError(f"{run_dir}: cannot list the run dir ({str(exc).splitlines()[0]})") from None
    if not found:
        raise UserError(f"--data {run_dir}: run dir does not exist (expected the --run-dir of 'skillgen run')")
    if is_file:
        raise UserError(f"--data {run_dir}: is a file, not a directory (expected the --run-dir of 'skillgen run')")
    if not shards:
        raise UserError(f"--data {run_dir}: no {ROWS_DIR}/{PART_GLOB} files (expected the --run-dir of a 'skillgen run' "
                        "that wrote sentences)")
    return [str(s) for s in shards]


def scan_generated(run_dir: str | Path) -> pl.LazyFrame:
    """Lazy (sentence, label, skill_id) rows of all shards, schema-checked."""
    shards = shard_paths(run_dir)
    try:
        lazy = pl.scan_parquet(shards, storage_options=polars_storage_options(str(run_dir)))
        schema = lazy.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{run_dir}: cannot read shards ({first})") from None
    missing = [c for c in REQUIRED if c not in schema]
    if missing:
        raise UserError(f"{run_dir}: shards lack column(s) {', '.join(missing)} (found: {', '.join(schema.names())})")
    wrong = [f"{c} is {schema[c]}" for c, t in REQUIRED.items() if schema[c] != t]
    if wrong:
        raise UserError(f"{run_dir}: shard columns have the wrong type ({'; '.join(wrong)}; expected strings)")
    return lazy.select(
        pl.col("sentence").str.strip_chars(),
        pl.col("label").str.strip_chars(),
        pl.col("skill_id"),
        pl.lit("generated").alias("source"),
    ).filter(pl.col("sentence").is_not_null() & (pl.col("sentence") != "") & pl.col("label").is_not_null() & (pl.col("label") != ""))


def taxonomy_pairs(skills: pl.DataFrame) -> pl.DataFrame:
    """(alt label -> label) and (description -> label) pairs from the taxonomy frame."""
    alts = (
        skills.select("skill_id", "label", pl.col("alt_labels").alias("sentence"))
        .explode("sentence")
        .with_columns(pl.col("sentence").str.strip_chars(), pl.lit("alt_label").alias("source"))
    )
    descs = skills.select("skill_id", "label", pl.col("description").str.strip_chars().alias("sentence")).with_columns(
        pl.lit("description").alias("source")
    )
    both = pl.concat([alts, descs]).filter(pl.col("sentence").is_not_null() & (pl.col("sentence") != ""))
    return both.filter(pl.col("sentence") != pl.col("label")).select("sentence", "label", "skill_id", "source")


def load_pairs(run_dir: str | Path, skills: pl.DataFrame | None = None,
               keep: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> pl.DataFrame:
    """All training pairs, deduplicated on (sentence, label), canonical order, with ``cls`` ids.

    ``skills`` (a :func:`skillgen.common.taxonomy.load_skills` frame) adds taxonomy pairs. ``keep`` filters
    the generated rows first (:class:`skilltrain.training.relevance.RelevanceFilter`).
    """
    generated = scan_generated(run_dir)
    if keep is not None:
        generated = keep(generated.collect()).lazy()
    frames = [generated]
    if skills is not None:
        frames.append(taxonomy_pairs(skills).lazy())
    pairs = (
        pl.concat(frames)
        .unique(subset=["sentence", "label"], keep="first", maintain_order=True)
        .sort(["label", "sentence"])
        .collect()
    )
    if pairs.height == 0:
        raise UserError(f"{run_dir}: shards hold no non-empty (sentence, label) rows")
    labels = pairs["label"].unique().sort()
    classes = pl.DataFrame({"label": labels, "cls": pl.int_range(0, labels.len(), eager=True, dtype=pl.Int64)})
    pairs = pairs.join(classes, on="label", how="left").select(PAIR_COLUMNS)
    if labels.len() < 2:
        raise UserError(f"{run_dir}: pairs cover only {labels.len()} skill; contrastive training needs at least 2")
    return pairs


def describe_pairs(pairs: pl.DataFrame) -> str:
    """``11 (generated=11) over 3 skills``: what training will see (logged once the inputs passed every check)."""
    sources = ", ".join(f"{s}={n}" for s, n in pairs.group_by("source").len().sort("source").iter_rows())
    return f"{pairs.height} ({sources}) over {pairs['cls'].n_unique()} skills"
