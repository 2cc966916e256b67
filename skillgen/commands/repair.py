"""``skillgen repair RUN_DIR``: move damaged shards aside so a rerun regenerates exactly their slots.

A partial copy of a run dir (or a full disk) can leave a truncated Parquet
file; every reader then stops with one line naming it. Repair moves each
unreadable row or failure shard to ``<run_dir>/damaged/`` (never deletes:
it may be recoverable), so the next ``skillgen run`` sees those slots as
missing and pays only for them. The ledger is never touched: what the lost
shards cost stays counted. A damaged ledger part or run.json is reported,
not moved, because the ledger is the run dir's record of spend.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "move damaged shards aside (a rerun then regenerates exactly their slots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the --run-dir of a generation run")


def repair(run_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Damaged shards moved (their new paths) and problems that need a person (one line each)."""
    from skillgen.common.errors import UserError
    from skillgen.rundir.ledger import LEDGER_DIR
    from skillgen.rundir.rundir import DAMAGED_DIR, RunDir
    from skillgen.rundir.runstate import read_run_json
    from skillgen.rundir.sinks import FAILURES_DIR, ROWS_DIR, read_part

    moved: list = []
    problems: list[str] = []
    with RunDir.attach(run_dir, purpose="skillgen repair") as rd:
        for sub in (ROWS_DIR, FAILURES_DIR):
            for path in rd.part_files(sub):
                try:
                    read_part(path)
                except UserError:
                    moved.append(rd.move_aside(path, DAMAGED_DIR))
        for path in rd.part_files(LEDGER_DIR):
            try:
                read_part(path)
            except UserError as exc:
                problems.append(str(exc))
        try:
            read_run_json(rd.root)
        except UserError as exc:
            problems.append(str(exc))
    return moved, problems


def run(args: argparse.Namespace) -> int:
    moved, problems = repair(args.run_dir)
    for path in moved:
        print(f"moved damaged shard to {path}")
    for line in problems:
        print(f"needs attention: {line}")
    if not moved and not problems:
        print(f"{args.run_dir}: no damaged files")
    elif moved:
        print("rerun the same `skillgen run` command to regenerate the moved shards' slots")
    return 2 if problems else 0
