"""The names in a run dir that readers outside :mod:`skillgen.rundir` rely on: where the generated rows are.

skilltrain scans a generation run dir's shards directly (Polars and Ray Data read the Parquet files), and
the pipeline fingerprints them; both take the names from here (through :mod:`skillgen.common`), so the
run dir's layout is written down once, below everything that reads it.
"""

from __future__ import annotations

import os

from skillgen.common.storage import Location, resolve

__all__ = ["PART_GLOB", "ROWS_DIR", "shard_files"]

ROWS_DIR = "shards"  # <run_dir>/shards/part-*.parquet: one row per generated sentence
PART_GLOB = "part-*.parquet"  # every part file (shards, failure records, ledger) is written once, whole


def shard_files(run_dir: "str | os.PathLike | Location") -> list[Location]:
    """The shard files of a run dir (local or object storage), sorted; [] when there are none."""
    return (resolve(run_dir) / ROWS_DIR).list(PART_GLOB)
