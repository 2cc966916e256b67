"""``python -m skillgen.simulator``: the same server as ``skillgen sim-server``."""

from __future__ import annotations

import argparse
import logging
import sys

from skillgen.common.argparsing import new_parser
from skillgen.common.errors import UserError
from skillgen.simulator import cli


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(prog="python -m skillgen.simulator", description=cli.DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (one line per request)")
    cli.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return cli.run(args)
    except UserError as exc:
        print(f"sim-server: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
