"""Where skilltrain caches what it derives from a model: skill indexes, ONNX graphs, unpacked named encoders.

Its own module at the bottom of the layers, because both the encoder loader
(:mod:`skilltrain.encoders.named`) and extraction need it and neither may import the other.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "user_cache_dir"]

CACHE_DIR_ENV = "SKILLGEN_CACHE_DIR"


def user_cache_dir() -> Path:
    """``$SKILLGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/skillgen``, else ``~/.cache/skillgen``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "skillgen"
