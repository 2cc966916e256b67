"""The run-dir contract in one object: one writer, every paid attempt in the ledger, every byte through
the storage layer, spend computed once.

Both drivers (online and batch), ``skillgen status``, ``skillgen repair``,
``skillgen batch cancel`` and the pipeline reach a run dir only through a
:class:`RunDir`; nothing else builds a path into one. That is what keeps a new
mode from forgetting part of the contract:

- :meth:`RunDir.open` takes the lease (a second writer gets a one-line
  :class:`~skillgen.common.errors.UserError`, exit 2, naming the holder) and
  checks the fingerprint before it returns; :meth:`RunDir.read_only` gives
  the readers without the lease, and its writers refuse;
- shards, failure records, the ledger, the batch manifest and its files all
  go through :mod:`skillgen.common.storage`, so local disk and ``s3://`` run
  the same code;
- :meth:`RunDir.spend` and :meth:`RunDir.progress` are the one place that
  says what the run dir spent and holds (what it lacks is the planner's
  business: :func:`skillgen.plan.build_tasks`; the storage layer knows
  nothing of planning).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from skillgen.common.errors import UserError
from skillgen.common.storage import Location, resolve
from skillgen.config import GenerationConfig
from skillgen.rundir.lease import RunDirLease
from skillgen.rundir.ledger import LEDGER_DIR, LedgerTotals, LedgerWriter, UnknownPolicy, ledger_totals
from skillgen.rundir.runstate import (Progress, check_writable, load_progress, open_run_json, read_run_json,
                                      record_invocation)
from skillgen.rundir.sinks import (FAILURE_SCHEMA, FAILURES_DIR, ROW_SCHEMA, ROWS_DIR, Row, ShardWriter, part_files,
                                   read_failures, read_parts, read_rows, to_frame, write_parquet_atomic)

__all__ = ["BATCH_DIR", "CANCEL_MARKER", "RunDir", "Spend"]

BATCH_DIR = "batch"
MANIFEST_FILE = "manifest.json"  # batch mode's record of intents, files and batches (skillgen.batch.state)
DAMAGED_DIR = "damaged"  # where `skillgen repair` moves unreadable shards
CANCEL_MARKER = "cancel-requested"


@dataclass(frozen=True)
class Spend:
    """What a run dir spent: the ledger (every attempt sent, open batch lines at worst case) and what its rows
    and failure records carry. ``total_usd`` is the larger: the ledger for any run dir written since it
    exists; rows alone for one written before (rows only see what arrived, so they never exceed the ledger)."""

    ledger: LedgerTotals
    rows_and_failures_usd: float

    @property
    def total_usd(self) -> float:
        return max(self.ledger.spent_usd, self.rows_and_failures_usd)


def holds_no_work(root: Location) -> bool:
    """No row, failure record, ledger entry, batch manifest or damaged shard: nothing was sent from this run dir."""
    if any(part_files(root / kind) for kind in (ROWS_DIR, FAILURES_DIR, LEDGER_DIR)):
        return False
    return not (root / BATCH_DIR / MANIFEST_FILE).exists() and not (root / DAMAGED_DIR).list(recursive=True)


def existing_run_dir(run_dir: str | Path | Location) -> Location:
    """``run_dir`` resolved, refused in one line unless it is a run dir (a typo, an empty folder, a file)."""
    root = resolve(run_dir, "run_dir")
    if root.is_local and not root.local_path.exists():
        raise UserError(f"{root}: no such run dir (the path does not exist)")
    if root.is_local and not root.local_path.is_dir():
        raise UserError(f"{root}: is a file, not a run dir")
    if read_run_json(root) is None:
        raise UserError(f"{root}: no run.json (not a skillgen run dir)")
    return root


class RunDir:
    """One run dir. Open it with :meth:`open` (writer, holds the lease) or :meth:`read_only`."""

    def __init__(self, root: Location, lease: RunDirLease | None):
        self.root = root
        self.lease = lease

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, config: GenerationConfig, purpose: str = "skillgen run") -> "RunDir":
        """Take the lease, then create or reopen ``config.run_dir`` with the same fingerprint."""
        root = resolve(config.run_dir, "run_dir")
        check_writable(root)
        lease = RunDirLease.acquire(root, purpose=purpose)
        try:
            open_run_json(root, config, takeover=holds_no_work(root))
        except BaseException:
            lease.release()
            raise
        return cls(root, lease)

    @classmethod
    def attach(cls, run_dir: str | Path | Location, purpose: str) -> "RunDir":
        """Take the lease of an existing run dir (repair, cancel): no config, no fingerprint to check."""
        root = existing_run_dir(run_dir)
        return cls(root, RunDirLease.acquire(root, purpose=purpose))

    @classmethod
    def read_only(cls, run_dir: str | Path | Location) -> "RunDir":
        """Readers only (``skillgen status``, the pipeline's report): no lease, so every writer refuses."""
        return cls(existing_run_dir(run_dir), None)

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        return str(self.root)

    @property
    def lost(self) -> bool:
        """Another process took the lease over: stop writing."""
        return self.lease is not None and self.lease.lost.is_set()

    def _writable(self) -> None:
        if self.lease is None:
            raise RuntimeError(f"{self.root} was opened read-only: writing needs RunDir.open (the lease)")

    # ---- run.json ----------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return read_run_json(self.root) or {}

    def record_invocation(self, entry: dict[str, Any]) -> None:
        self._writable()
        record_invocation(self.root, entry)

    # ---- shards, failure records, ledger ----------------------------------------------------------

    def row_writer(self, flush_rows: int = 2000, flush_seconds: float = 5.0) -> ShardWriter:
        self._writable()
        return ShardWriter(self.root / ROWS_DIR, ROW_SCHEMA, flush_rows, flush_seconds)

    def failure_writer(self, flush_rows: int = 2000, flush_seconds: float = 5.0) -> ShardWriter:
        self._writable()
        return ShardWriter(self.root / FAILURES_DIR, FAILURE_SCHEMA, flush_rows, flush_seconds)

    def write_rows_once(self, tag: str, rows: list[Row]) -> bool:
        """Rows as one shard named by ``tag`` unless a shard with that tag exists; True if written now.
        (Batch collection: replaying it after a crash writes no row twice.)"""
        self._writable()
        folder = self.root / ROWS_DIR
        if not rows or folder.list(f"part-*-{tag}.parquet"):
            return False
        write_parquet_atomic(to_frame(rows, ROW_SCHEMA), folder / f"part-{time.time_ns():020d}-{tag}.parquet")
        return True

    def ledger_writer(self) -> LedgerWriter:
        """The ledger's writer; it pickles (the budget actor of online mode writes through it)."""
        self._writable()
        return LedgerWriter(self.root)

    def rows(self, dedupe: bool = True) -> pl.DataFrame:
        return read_rows(self.root, dedupe=dedupe)

    def failures(self, active_only: bool = True) -> pl.DataFrame:
        return read_failures(self.root, active_only=active_only)

    def part_files(self, kind: str) -> list[Location]:
        """Part files of ``shards``, ``failures`` or ``ledger`` (repair checks each)."""
        if kind not in (ROWS_DIR, FAILURES_DIR, LEDGER_DIR):
            raise ValueError(kind)
        return part_files(self.root / kind)

    def move_aside(self, path: Location, folder: str) -> Location:
        """Move a damaged part file to ``<run_dir>/<folder>/<kind>/`` (:meth:`Location.move_to`: on object stores too)."""
        self._writable()
        target = self.root / folder / path.parent.name / path.name
        path.move_to(target)
        return target

    # ---- batch mode's files ----------------------------------------------------------------------

    def batch_file(self, name: str) -> Location:
        """A file of batch mode under ``<run_dir>/batch/`` (read it; write it with :meth:`write_batch_file`)."""
        return self.root / BATCH_DIR / name

    def write_batch_file(self, name: str, text: str) -> None:
        self._writable()
        self.batch_file(name).write_text(text)

    def cancel_requested(self) -> bool:
        return self.batch_file(CANCEL_MARKER).exists()

    def clear_cancel(self) -> None:
        self._writable()
        marker = self.batch_file(CANCEL_MARKER)
        if marker.exists():
            marker.delete()

    @classmethod
    def request_cancel(cls, run_dir: str | Path | Location) -> None:
        """``skillgen batch cancel`` while a batch run holds the lease: the one write a non-holder makes, a
        request the holder acts on (it cancels and collects), never run data."""
        (resolve(run_dir, "run_dir") / BATCH_DIR / CANCEL_MARKER).write_text("cancel requested\n")

    # ---- computed once -------------------------------------------------------------------------

    def progress(self) -> Progress:
        return load_progress(self.root)

    def spend(self, policy: UnknownPolicy = "worst_case") -> Spend:
        rows = read_parts(self.root / ROWS_DIR, ROW_SCHEMA)
        fails = read_parts(self.root / FAILURES_DIR, FAILURE_SCHEMA)
        by_rows = float((rows["cost_usd"].sum() or 0.0) + (fails["cost_usd"].fill_null(0).sum() or 0.0))
        return Spend(ledger_totals(self.root, policy), by_rows)
