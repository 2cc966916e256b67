"""Where shared inputs live by default.

The ESCO taxonomy and the TECH/HOUSE benchmarks are never copied into the
repository; they are read from a data directory, by default ``../shared/data``
next to the checkout (or the current directory), overridable with
``SKILLS_DATA_DIR`` or per-file flags.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "SKILLS_DATA_DIR"
ESCO_CSV_ENV = "ESCO_SKILLS_CSV"

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The shared data directory: ``$SKILLS_DATA_DIR`` or the first ``../shared/data`` found."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return _REPO_ROOT.parent / "shared" / "data"


def default_esco_csv() -> Path:
    """``$ESCO_SKILLS_CSV`` or ``<data dir>/esco/skills_en.csv``."""
    env = os.environ.get(ESCO_CSV_ENV)
    if env:
        return Path(env).expanduser()
    return data_dir() / "esco" / "skills_en.csv"


def default_benchmark_dir() -> Path:
    return data_dir() / "benchmarks"
