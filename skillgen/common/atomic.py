"""The one write-then-rename helper: readers and crashes never see half a file.

Every file the project writes whole (Parquet shards, ledger parts, run.json,
lease files, cached downloads) goes through :func:`write_atomic`: the bytes
go to a hidden temporary file in the target's folder, are fsynced, then
``os.replace`` puts them in place and the folder is fsynced. Keeping this in
one place means object storage (where a PUT is already atomic) can later be
swapped in here alone.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

__all__ = ["fsync_dir", "temp_path", "write_atomic"]


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(target: Path) -> Path:
    """A hidden sibling of ``target`` unique to this process and call (never matched by ``part-*`` globs)."""
    return target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def write_atomic(target: str | Path, write: Callable[[Path], None] | bytes | str) -> Path:
    """Write ``target`` whole or not at all; ``write`` is the content or a function filling a path."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        if callable(write):
            write(tmp)
        else:
            tmp.write_bytes(write.encode("utf-8") if isinstance(write, str) else write)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target
