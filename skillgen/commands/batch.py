"""``skillgen batch cancel RUN_DIR``: cancel a batch-mode run's batches in flight."""

from __future__ import annotations

import argparse

HELP = "manage a --mode batch run: 'cancel RUN_DIR' cancels its batches in flight"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["cancel"], help="cancel: stop the run's open batches (completed lines are kept)")
    parser.add_argument("run_dir", help="the --run-dir of a --mode batch run")


def run(args: argparse.Namespace) -> int:
    from skillgen.batch.cancel import cancel_run

    done = cancel_run(args.run_dir)
    for batch_id, status in done:
        print(f"{batch_id}: {status}")
    print(f"{len(done)} batches cancelled; a running driver stops after collecting what they finished; "
          "rerun `skillgen run` to resubmit the rest")
    return 0
