"""``python -m skillgen.simulator``: the same server as ``skillgen sim-server``."""

from __future__ import annotations

import argparse
import logging
import sys

from skillgen.common.errors import UserError
from skillgen.simulator import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skillgen.simulator", description=cli.DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (one line per request)")
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return cli.run(args)
    except UserError as exc:
        print(f"sim-server: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
