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
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after the help, unless the help already names its default or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.required or action.default is None:
            return text
        return super()._get_help_string(action)


# keyword arguments for every ArgumentParser and sub-parser in this project
PARSER_OPTIONS: dict[str, Any] = {"allow_abbrev": False, "formatter_class": HelpFormatter}


def new_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """``argparse.ArgumentParser`` with :data:`PARSER_OPTIONS` (overridable, e.g. ``formatter_class``)."""
    return argparse.ArgumentParser(**{**PARSER_OPTIONS, **kwargs})
