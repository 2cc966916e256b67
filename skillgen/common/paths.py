"""Where the ESCO taxonomy and the TECH/HOUSE benchmarks are read from by default.

Both ship inside the package (``skillgen/common/data``, listed with source,
licence and checksum in its ``MANIFEST.json``), so an installed copy works from
any directory with nothing downloaded. A user's own copy wins, in this order:
a per-file flag (``--esco``, ``--benchmark-dir``), ``ESCO_SKILLS_CSV``, and
``SKILLS_DATA_DIR`` (a directory laid out as ``esco/skills_en.csv`` and
``benchmarks/{tech,house}_{validation,test}.csv``).
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["BENCHMARK_DIR_HELP", "BUNDLED_ESCO_FILE", "BUNDLED_ESCO_VERSION", "DATA_DIR_ENV", "ESCO_CSV_ENV",
           "ESCO_HELP", "CACHE_DIR_ENV", "bundled_data_dir", "data_dir", "default_benchmark_dir", "default_esco_path",
           "is_bundled_esco", "manifest", "user_cache_dir", "verify_bundled"]

CACHE_DIR_ENV = "SKILLGEN_CACHE_DIR"
DATA_DIR_ENV = "SKILLS_DATA_DIR"
ESCO_CSV_ENV = "ESCO_SKILLS_CSV"
BUNDLED_ESCO_FILE = "esco_skills_en_v1.1.0.parquet"
BUNDLED_ESCO_VERSION = "v1.1.0"


def bundled_data_dir() -> Path:
    """The package's data folder (a plain directory for any pip or wheel install)."""
    return Path(str(resources.files("skillgen.common") / "data"))


@lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    """``MANIFEST.json`` of the bundled data: one entry per file with source, licence, rows, sha256."""
    return json.loads((bundled_data_dir() / "MANIFEST.json").read_text(encoding="utf-8"))


def verify_bundled() -> list[str]:
    """Files whose SHA-256 differs from the manifest (empty when the install is intact)."""
    bad = []
    for entry in manifest()["files"]:
        path = bundled_data_dir() / entry["file"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
        if digest != entry["sha256"]:
            bad.append(entry["file"])
    return bad


def user_cache_dir() -> Path:
    """Where what is derived from a model is cached (skill embeddings, indexes, unpacked encoders):
    ``$SKILLGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/skillgen``, else ``~/.cache/skillgen``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "skillgen"


def data_dir() -> Path | None:
    """``$SKILLS_DATA_DIR`` when set, else None (the bundled data is used)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else None


def default_esco_path() -> Path:
    """``$ESCO_SKILLS_CSV``, else ``$SKILLS_DATA_DIR/esco/skills_en.csv``, else the bundled ESCO v1.1.0."""
    env = os.environ.get(ESCO_CSV_ENV)
    if env:
        return Path(env).expanduser()
    user_dir = data_dir()
    if user_dir is not None:
        return user_dir / "esco" / "skills_en.csv"
    return bundled_data_dir() / BUNDLED_ESCO_FILE


def is_bundled_esco(path: str | Path) -> bool:
    return Path(path).resolve() == (bundled_data_dir() / BUNDLED_ESCO_FILE).resolve()


def default_benchmark_dir() -> Path:
    """``$SKILLS_DATA_DIR/benchmarks`` when set, else the bundled TECH/HOUSE files."""
    user_dir = data_dir()
    return user_dir / "benchmarks" if user_dir is not None else bundled_data_dir() / "benchmarks"


# One help text per data option, shared by every command line that has the option.
ESCO_HELP = (
    "ESCO skills file: the official skills_en.csv, the ZIP of the official download, or Parquet "
    f"(default: ${ESCO_CSV_ENV}, else ${DATA_DIR_ENV}/esco/skills_en.csv, else the bundled ESCO {BUNDLED_ESCO_VERSION})"
)
BENCHMARK_DIR_HELP = (
    "directory of {tech,house}_{validation,test}.csv (or .parquet) "
    f"(default: ${DATA_DIR_ENV}/benchmarks, else the bundled TECH/HOUSE files)"
)
