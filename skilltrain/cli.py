"""``skilltrain``: train, evaluate and apply the skill-extraction bi-encoder.

Subcommands live in their own modules (``HELP``, ``add_arguments``, ``run``);
dispatch and one-line error handling are shared with ``skillgen``.
"""

from __future__ import annotations

import sys
from typing import Sequence

from skillgen.common import dispatch

PROG = "skilltrain"
DESCRIPTION = "Contrastive bi-encoder training on generated (sentence, skill) pairs, evaluation and skill extraction."
COMMANDS: dict[str, str] = {
    "eval": "skilltrain.evaluation.cli",
    "fit": "skilltrain.training.cli",
    "extract": "skilltrain.extraction.cli",
    "serve": "skilltrain.serve.cli",
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(argv, PROG, DESCRIPTION, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
