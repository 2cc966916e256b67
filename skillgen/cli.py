"""``skillgen``: the generation half's command line.

Each subcommand lives in its own module exposing ``HELP``, ``add_arguments``
and ``run(args) -> int``; this file only dispatches, so commands can be added
without touching each other. A :class:`UserError` anywhere becomes one line on
stderr and exit code 2; Ctrl-C exits 130 after the command has saved its work.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from skillgen.common.argparsing import PARSER_OPTIONS, new_parser
from skillgen.common.errors import UserError

PROG = "skillgen"
DESCRIPTION = "Generate synthetic job-ad sentences for ESCO skills with an LLM, on Ray, on a token budget."
# subcommand -> module implementing it
COMMANDS: dict[str, str] = {
    "sim-server": "skillgen.simulator.cli",
    "estimate": "skillgen.commands.estimate",
    "run": "skillgen.commands.run",
    "status": "skillgen.commands.status",
    "batch": "skillgen.commands.batch",
    "repair": "skillgen.commands.repair",
    "report": "skillgen.commands.report",
    "export": "skillgen.commands.export",
}


def build_parser(prog: str, description: str, commands: dict[str, str]) -> argparse.ArgumentParser:
    parser = new_parser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in commands.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            **PARSER_OPTIONS,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def dispatch(argv: Sequence[str] | None, prog: str, description: str, commands: dict[str, str]) -> int:
    parser = build_parser(prog, description, commands)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished work is saved, rerun the same command to resume", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(argv, PROG, DESCRIPTION, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
