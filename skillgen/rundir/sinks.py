"""Parquet shards written atomically, and readers that turn a run dir into frames.

Only the driver of the run holding the run dir lease (:mod:`skillgen.rundir.lease`)
writes shards. A shard is written once under its final name through
:mod:`skillgen.common.storage`: on local disk by :func:`skillgen.common.atomic.write_atomic`
(temporary file, fsync, rename), on object storage (``s3://``) as one object,
visible only when complete. Either way a reader or a crash never sees half a
shard; a file damaged anyway (a partial copy) is named in one line by the
readers, and ``skillgen repair`` moves it aside. Rows are
flushed every ``flush_rows`` rows or ``flush_seconds`` seconds, and on every
exit path, so a crash loses at most the unflushed buffer and the requests in
flight (neither of which is recorded as done, so a rerun redoes them).

Row layout (one row per sentence): see :data:`ROW_SCHEMA`. ``prompt_tokens``
and ``completion_tokens`` are those of the response that produced the
sentence; ``cost_usd`` is the sentence's share of what its skill cost so far
(including responses that were rejected by validation). What the run dir
*spent* is the request ledger's business (:mod:`skillgen.rundir.ledger`): rows do not
see retries, lost answers or requests that died in flight.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from skillgen.common.errors import UserError
from skillgen.common.layout import PART_GLOB, ROWS_DIR
from skillgen.common.storage import Location, resolve
from skillgen.common.taxonomy import Skill

__all__ = ["FAILURES_DIR", "FAILURE_SCHEMA", "FailureRecord", "REPAIR_ADVICE", "ROWS_DIR", "ROW_SCHEMA", "Row",
           "ShardWriter", "part_files", "read_failures", "read_part", "read_parts", "read_rows", "to_frame",
           "utcnow", "write_parquet_atomic"]

FAILURES_DIR = "failures"

ROW_SCHEMA: dict[str, Any] = {
    "skill_id": pl.String,
    "label": pl.String,
    "sentence": pl.String,
    "sample_idx": pl.Int32,
    "request_key": pl.String,
    "model": pl.String,
    "prompt_version": pl.String,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "cost_usd": pl.Float64,
    "created_at": pl.Datetime("us", "UTC"),
}

FAILURE_SCHEMA: dict[str, Any] = {
    "skill_id": pl.String,
    "request_key": pl.String,
    "error_class": pl.String,
    "message": pl.String,
    "attempts": pl.Int32,
    "created_at": pl.Datetime("us", "UTC"),
    # extensions beyond the contract: what is missing and what the failure cost
    "label": pl.String,
    "n_missing": pl.Int32,
    "cost_usd": pl.Float64,
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Row:
    """One kept sentence: a row of :data:`ROW_SCHEMA` (same fields, same order)."""

    skill_id: str
    label: str
    sentence: str
    sample_idx: int
    request_key: str
    model: str
    prompt_version: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float
    created_at: datetime

    @property
    def slot(self) -> tuple[str, int]:
        return self.request_key, int(self.sample_idx)


@dataclass(frozen=True)
class FailureRecord:
    """A skill given up on (until a rerun with ``retry_failures``): a row of :data:`FAILURE_SCHEMA`."""

    skill_id: str
    request_key: str
    error_class: str
    message: str
    attempts: int
    created_at: datetime
    label: str
    n_missing: int
    cost_usd: float

    @classmethod
    def of(cls, skill: Skill, request_key: str, error_class: str, message: str, attempts: int, n_missing: int,
           cost: float) -> "FailureRecord":
        return cls(skill.skill_id, request_key, error_class, message[:1000], int(attempts), utcnow(),
                   skill.label, int(n_missing), float(cost))


assert [f.name for f in fields(Row)] == list(ROW_SCHEMA)  # the dataclasses are the schemas' rows
assert [f.name for f in fields(FailureRecord)] == list(FAILURE_SCHEMA)


def write_parquet_atomic(frame: pl.DataFrame, target: str | Path | Location) -> Location:
    """Write ``frame`` whole to ``target`` (a path or URI), once: atomic on disk and on object stores."""
    location = resolve(target)
    location.write_parquet(frame)
    return location


class ShardWriter:
    """Buffers rows (:class:`Row` / :class:`FailureRecord`) and writes them as ``part-*.parquet`` shards."""

    def __init__(self, folder: str | Path | Location, schema: dict[str, Any], flush_rows: int = 2000, flush_seconds: float = 5.0):
        self.folder = resolve(folder)
        self.schema = schema
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.buffer: list[Row | FailureRecord] = []
        self.last_flush = time.monotonic()
        self.written = 0
        self.shards: list[Location] = []

    def add(self, rows: Iterable[Row | FailureRecord]) -> None:
        self.buffer.extend(rows)
        self.maybe_flush()

    def maybe_flush(self) -> None:
        if len(self.buffer) >= self.flush_rows or (
            self.buffer and time.monotonic() - self.last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> Location | None:
        self.last_flush = time.monotonic()
        if not self.buffer:
            return None
        frame = to_frame(self.buffer, self.schema)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        path = write_parquet_atomic(frame, self.folder / name)
        self.buffer = []  # only once the shard is on disk: a failed write keeps the rows for the next try
        self.written += frame.height
        self.shards.append(path)
        return path


def to_frame(records: Iterable[Row | FailureRecord], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([asdict(r) for r in records], schema=schema)


REPAIR_ADVICE = "run `skillgen repair RUN_DIR` to move it aside (a rerun then regenerates exactly its slots)"


def part_files(folder: str | Path | Location) -> list[Location]:
    return resolve(folder).list(PART_GLOB)


def read_part(path: str | Path | Location, advice: str = REPAIR_ADVICE) -> pl.DataFrame:
    """One part file; a damaged one (truncated copy, bad bytes) is a one-line UserError naming it."""
    try:
        return resolve(path).read_parquet()
    except Exception as exc:  # noqa: BLE001 - polars/arrow raise several kinds for a damaged file
        raise UserError(f"{path}: damaged Parquet file ({type(exc).__name__}); {advice}") from None


def read_parts(folder: str | Path | Location, schema: dict[str, Any], advice: str = REPAIR_ADVICE) -> pl.DataFrame:
    """All part files of ``folder`` in ``schema``: the union of their columns (a column only some files
    have is null elsewhere), missing columns as nulls, extra ones dropped."""
    frames = [read_part(f, advice) for f in part_files(folder)]
    if not frames:
        return pl.DataFrame(schema=schema)
    frame = pl.concat(frames, how="diagonal_relaxed")
    return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                         for c, t in schema.items()])


def _read_folder(folder: str | Path | Location, schema: dict[str, Any]) -> pl.DataFrame:
    return read_parts(folder, schema)


def read_rows(run_dir: str | Path, dedupe: bool = True) -> pl.DataFrame:
    """All generated rows of a run dir; ``dedupe`` keeps the first row per (skill_id, sample_idx)."""
    frame = _read_folder(resolve(run_dir) / ROWS_DIR, ROW_SCHEMA)
    if dedupe and frame.height:
        frame = frame.sort("created_at").unique(["skill_id", "sample_idx"], keep="first", maintain_order=True)
    return frame


def read_failures(run_dir: str | Path, active_only: bool = True) -> pl.DataFrame:
    """Failure records; ``active_only`` keeps the latest per request key whose skill is still incomplete."""
    frame = _read_folder(resolve(run_dir) / FAILURES_DIR, FAILURE_SCHEMA)
    if not active_only or frame.height == 0:
        return frame
    frame = frame.sort("created_at").unique("request_key", keep="last", maintain_order=True)
    rows = read_rows(run_dir)
    n = _n_sentences(run_dir)
    if rows.height and n:
        complete = rows.group_by("request_key").len().filter(pl.col("len") >= n)["request_key"]
        frame = frame.filter(~pl.col("request_key").is_in(complete.to_list()))
    return frame


def _n_sentences(run_dir: str | Path) -> int | None:
    import json

    path = resolve(run_dir) / "run.json"
    try:
        return int(json.loads(path.read_text())["config"]["n_sentences"])
    except (OSError, KeyError, ValueError, TypeError):
        return None
