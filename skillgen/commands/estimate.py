"""``skillgen estimate``: tokens, cost (online and Batch API) and duration before a run."""

from __future__ import annotations

import argparse
import json

from skillgen.commands.common import add_config_arguments, config_from_args

HELP = "estimate tokens, cost and duration of a generation run before paying for it"
DESCRIPTION = (
    "Counts the exact prompt tokens of every selected skill's prompt (tiktoken, the model's encoding), expects "
    "max_tokens completion tokens per request or measures them with --pilot K real requests, and prints the cost "
    "online and with the Batch API discount, and the duration implied by --rpm/--tpm."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--pilot", type=int, default=0, metavar="K",
                        help="send K real requests (K skills) to measure completion length; costs money (0: none)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")


def run(args: argparse.Namespace) -> int:
    import logging

    from skillgen.common.errors import UserError
    from skillgen.cost_estimate import estimate

    logging.getLogger("httpx2").setLevel(logging.WARNING)
    config = config_from_args(args)
    if args.pilot < 0:
        raise UserError(f"--pilot: a number of requests, 0 or more (got {args.pilot})")
    est = estimate(config, pilot=args.pilot)
    print(json.dumps(est.to_dict(), indent=2) if args.json else est.format())
    return 0
