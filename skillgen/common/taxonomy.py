"""The ESCO skills pillar as a Polars frame.

Accepts the official ``skills_en.csv`` download (or its ZIP), the reduced
layout and the bundled Parquet copy alike: columns are selected by name and extra ones are
ignored. Every problem a user can fix (missing file, wrong encoding, missing
column, empty or duplicate labels) raises :class:`UserError` naming the file,
because a half-loaded taxonomy silently shifts every downstream metric.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import polars as pl

from skillgen.common.errors import UserError
from skillgen.common.paths import BUNDLED_ESCO_VERSION, ESCO_CSV_ENV, default_esco_path, is_bundled_esco

__all__ = ["LABEL_COLUMN", "OPTIONAL_COLUMNS", "SCHEMA", "Skill", "by_labels", "by_type", "file_sha256", "first_n",
           "iter_skills", "label_skill_id", "load_skills", "random_n", "resolve_esco_path", "select"]

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # files whose shared-URI warning was already logged by this process

LABEL_COLUMN = "preferredLabel"
# source column -> frame column
OPTIONAL_COLUMNS = {
    "conceptUri": "skill_id",
    "altLabels": "alt_labels",
    "description": "description",
    "skillType": "skill_type",
    "reuseLevel": "reuse_level",
}
SCHEMA = {
    "skill_id": pl.String,
    "label": pl.String,
    "alt_labels": pl.List(pl.String),
    "description": pl.String,
    "skill_type": pl.String,
    "reuse_level": pl.String,
}


@dataclass(frozen=True)
class Skill:
    """One ESCO skill, the unit of generation and the target of extraction."""

    skill_id: str
    label: str
    alt_labels: tuple[str, ...] = ()
    description: str = ""
    skill_type: str = ""
    reuse_level: str = ""


def label_skill_id(label: str) -> str:
    """Stable id for a skill without a conceptUri: a hash of its label, so reruns agree."""
    return "esco-label:" + hashlib.sha256(label.strip().encode("utf-8")).hexdigest()[:16]


def resolve_esco_path(path: str | Path | None) -> Path:
    """The taxonomy file to read: the given path, else the default (see :mod:`skillgen.common.paths`)."""
    if path is not None:
        return Path(path).expanduser()
    default = default_esco_path()
    if not default.exists():
        raise UserError(
            f"ESCO skills file not found at {default} (from {ESCO_CSV_ENV} or SKILLS_DATA_DIR): "
            f"unset them to use the bundled ESCO {BUNDLED_ESCO_VERSION}, or pass --esco PATH"
        )
    return default


def load_skills(path: str | Path | None = None) -> pl.DataFrame:
    """Load and validate an ESCO skills file into the frame described by :data:`SCHEMA`.

    Accepts the official ``skills_en.csv``, the ZIP the official download comes in
    (its ``skills_en.csv`` member is read), and Parquet with the same columns (the
    bundled copy). With no path, the default of :func:`resolve_esco_path` is read.
    """
    path = resolve_esco_path(path)
    if not path.exists():
        raise UserError(f"{path}: ESCO skills file does not exist")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected the ESCO skills CSV (or the ZIP of the official download)")
    if path.suffix.lower() == ".parquet":
        frame = _read_parquet(path)
    else:
        frame = _read_csv_bytes(_csv_bytes(path), path)
    if LABEL_COLUMN not in frame.columns:
        raise UserError(f"{path}: missing required column '{LABEL_COLUMN}' (found: {', '.join(frame.columns) or 'none'})")
    if frame.height == 0:
        raise UserError(f"{path}: has a header but no skill rows")
    return _normalise(frame, path)


def _csv_bytes(path: Path) -> bytes:
    """The CSV's bytes; for a ZIP (the official ESCO download), its ``skills_<lang>.csv`` member."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            looks_zipped = fh.read(4) == b"PK\x03\x04"
        if looks_zipped or path.suffix.lower() == ".zip":
            raise UserError(f"{path}: not a readable ZIP file (damaged or incomplete download?); expected the official "
                            "ESCO download or its skills_en.csv")
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if Path(n).name.lower().startswith("skills_") and n.lower().endswith(".csv")]
            preferred = [n for n in names if Path(n).name.lower() == "skills_en.csv"] or names
            if not preferred:
                raise UserError(f"{path}: ZIP has no skills_en.csv (expected the official ESCO CSV download)")
            return archive.read(preferred[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable ZIP file ({exc}); expected the official ESCO download") from None


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path).cast(pl.String)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable Parquet file ({first})") from None


def _read_csv_bytes(raw: bytes, path: Path) -> pl.DataFrame:
    if not raw.strip():
        raise UserError(f"{path}: file is empty, expected the ESCO skills CSV with a {LABEL_COLUMN} column")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}: not UTF-8 (invalid byte at line {line}); re-export the CSV as UTF-8") from None
    try:
        return pl.read_csv(io.BytesIO(text.encode("utf-8")), infer_schema=False)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable CSV ({first})") from None


def _normalise(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    columns = [pl.col(LABEL_COLUMN).fill_null("").str.strip_chars().alias("label")]
    for source, target in OPTIONAL_COLUMNS.items():
        if source in frame.columns:
            columns.append(pl.col(source).fill_null("").str.strip_chars().alias(target))
        else:
            columns.append(pl.lit("").alias(target))
    df = frame.select(columns)

    empty = df.with_row_index("row", offset=1).filter(pl.col("label") == "")["row"].to_list()
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (" ..." if len(empty) > 5 else "")
        raise UserError(f"{path}: empty {LABEL_COLUMN} in data row(s) {shown}")
    dupes = df.group_by("label").len().filter(pl.col("len") > 1).sort("label")["label"].to_list()
    if dupes:
        shown = "; ".join(repr(d) for d in dupes[:5]) + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
        raise UserError(f"{path}: duplicate {LABEL_COLUMN} values ({len(dupes)}): {shown}")

    df = df.with_columns(
        pl.when(pl.col("skill_id") == "")
        .then(pl.col("label").map_elements(label_skill_id, return_dtype=pl.String))
        .otherwise(pl.col("skill_id"))
        .alias("skill_id"),
        pl.col("alt_labels")
        .str.split("\n")
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
        .alias("alt_labels"),
    )
    # Some ESCO redistributions reuse one conceptUri for two labels. Labels are what the
    # benchmarks score, so both skills stay; each gets an id that depends only on its own
    # URI and label (never on row order), keeping request keys stable across reruns.
    shared_uri = df.group_by("skill_id").len().filter(pl.col("len") > 1)["skill_id"]
    if shared_uri.len():
        if str(path) not in _WARNED:  # warn once per file and process; the suffix applies on every load
            _WARNED.add(str(path))
            level = logging.DEBUG if is_bundled_esco(path) else logging.WARNING  # known and documented for the bundled copy
            log.log(level, "%s: %d conceptUri values are shared by several labels; their ids get a label suffix", path, shared_uri.len())
        df = df.with_columns(
            pl.when(pl.col("skill_id").is_in(shared_uri.to_list()))
            .then(pl.col("skill_id") + "#" + pl.col("label").map_elements(lambda s: label_skill_id(s)[-8:], return_dtype=pl.String))
            .otherwise(pl.col("skill_id"))
            .alias("skill_id")
        )
    return df.select(list(SCHEMA)).cast(SCHEMA)  # type: ignore[arg-type]


# ---- slices -----------------------------------------------------------------


def first_n(skills: pl.DataFrame, n: int) -> pl.DataFrame:
    return skills.head(n)


def random_n(skills: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` skills drawn without replacement, reproducible by ``seed``, in file order."""
    n = min(n, skills.height)
    rows = sorted(random.Random(seed).sample(range(skills.height), n))
    return skills[rows]


def by_type(skills: pl.DataFrame, types: Iterable[str]) -> pl.DataFrame:
    wanted = list(types)
    return skills.filter(pl.col("skill_type").is_in(wanted))


def by_labels(skills: pl.DataFrame, labels: Sequence[str]) -> pl.DataFrame:
    """The skills with these preferred labels; unknown labels are an error, not a silent drop."""
    known = set(skills["label"].to_list())
    missing = [lab for lab in labels if lab not in known]
    if missing:
        raise UserError(f"unknown ESCO label(s): {', '.join(repr(m) for m in missing[:5])}")
    return skills.filter(pl.col("label").is_in(list(labels)))


def select(
    skills: pl.DataFrame,
    *,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    types: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Apply the slice options a CLI or config exposes, in a fixed order: labels, types, sample, limit."""
    if labels:
        skills = by_labels(skills, labels)
    if types:
        skills = by_type(skills, types)
    if sample is not None:
        skills = random_n(skills, sample, seed)
    if limit is not None:
        skills = first_n(skills, limit)
    return skills


def iter_skills(skills: pl.DataFrame) -> Iterator[Skill]:
    for row in skills.iter_rows(named=True):
        yield Skill(
            skill_id=row["skill_id"],
            label=row["label"],
            alt_labels=tuple(row["alt_labels"] or ()),
            description=row["description"] or "",
            skill_type=row["skill_type"] or "",
            reuse_level=row["reuse_level"] or "",
        )


def file_sha256(path: str | Path) -> str:
    """Content hash of a taxonomy file: keys caches of skill embeddings."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
