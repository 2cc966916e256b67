"""``skillgen run``: budget-aware, resumable bulk generation on Ray."""

from __future__ import annotations

import argparse
import json

from skillgen.commands.common import add_config_arguments, config_flags, config_from_args

HELP = "generate sentences for the selected skills into a run dir (resumable, rate- and spend-limited)"
DESCRIPTION = (
    "Starts one budget actor, one scheduler and N worker actors on Ray (local, or the cluster in $RAY_ADDRESS / "
    "--ray-address). Rerunning the same command on the same --run-dir skips finished skills and pays only for the "
    "rest. Everything is checked before the run dir is created or a request sent (inputs, the API key, one cheap "
    "request to the endpoint). Exit code 0: complete; 2: bad input, or the run dir is another run's (one line on "
    "stderr, nothing written); 3: stopped (spend cap, interrupted) or incomplete, rerun to continue."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--retry-failures", action="store_true", default=argparse.SUPPRESS,
                        help="also retry skills that have failure records from earlier runs")
    parser.add_argument("--no-progress", action="store_true", help="no live display / progress log lines")
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON")


def run(args: argparse.Namespace) -> int:
    import logging

    from skillgen.common.errors import UserError
    from skillgen.rundir.runstate import FingerprintMismatch
    from skillgen.generation import run_generation
    from skillgen.summary import RunState

    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per request is noise in job logs
    config = config_from_args(args)
    try:
        summary = run_generation(config, progress=not args.no_progress)
    except FingerprintMismatch as exc:  # name the settings the way the user typed them
        raise UserError(exc.describe(config_flags())) from None
    print(json.dumps(summary.to_dict(), indent=2, default=str) if args.json else summary.format())
    return 0 if summary.state == RunState.COMPLETE else 3
