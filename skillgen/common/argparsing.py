"""The one way this project builds an argument parser: exact option names, one default per help line.

argparse guesses by default: ``--limi 5`` is taken as ``--limit 5`` (prefix matching),
so a typo or a future option that shares a prefix silently changes what a paid run
does. ``allow_abbrev=False`` turns that off; :func:`new_parser` and
:data:`PARSER_OPTIONS` (for ``add_parser``) set it on every parser and sub-parser.

:class:`HelpFormatter` appends ``(default: X)`` like argparse's
``ArgumentDefaultsHelpFormatter``, except where the help text already says what
the default is: those options would otherwise print two defaults, the second one
usually ``(default: None)``. Required options and options whose default is ``None``
(nothing set) get no ``(default: ...)`` either: it would say nothing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any, Sequence

from skillgen.common.errors import UserError

__all__ = ["HelpFormatter", "PARSER_OPTIONS", "build_parser", "dispatch", "new_parser"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after the help, unless the help already names its default or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.required or action.default is None:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument error is one line, like every other error (argparse prints the whole usage first,
    which for ``skillgen run`` is 20 lines above the one that matters); ``--help`` still shows it all."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# keyword arguments for every ArgumentParser and sub-parser in this project
PARSER_OPTIONS: dict[str, Any] = {"allow_abbrev": False, "formatter_class": HelpFormatter}


def new_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """:class:`Parser` with :data:`PARSER_OPTIONS` (overridable, e.g. ``formatter_class``)."""
    return Parser(**{**PARSER_OPTIONS, **kwargs})


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
