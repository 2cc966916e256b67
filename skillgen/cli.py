"""``skillgen``: the generation half's command line.

Each subcommand lives in its own module exposing ``HELP``, ``add_arguments``
and ``run(args) -> int``; this file only names them, so commands can be added
without touching each other. :func:`skillgen.common.argparsing.dispatch` (shared
with ``skilltrain``) turns a :class:`UserError` into one line on stderr and exit
code 2, and Ctrl-C into exit 130 after the command has saved its work.
"""

from __future__ import annotations

import sys
from typing import Sequence

from skillgen.common.argparsing import dispatch

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


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(argv, PROG, DESCRIPTION, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
