"""Where a command writes, checked before it writes anything, and never mixed with a user's files.

A command that writes a folder (``skillgen export``, ``skilltrain fit --out``, ``extract --batch --out``)
or a file (``skilltrain eval --out``, ``extract --out``) calls :func:`check_output_dir` or
:func:`check_output_file` with everything else it validates, before its first side effect. The check
refuses, in one line naming the flag:

- a path of the wrong kind (a file where a folder goes, a folder where a file goes), or one that cannot
  be created because a parent is a file or is not writable;
- an output that overlaps an input (``--out`` inside the run dir it reads, or holding it);
- a folder or file that already holds something other than this command's own earlier output, unless
  ``--overwrite`` was given. Overwriting replaces: :meth:`Output.clear` empties the folder before the
  new output goes in, so two outputs are never merged.

Local paths are checked on disk; object-store URIs by listing (writability is only known on writing).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from skillgen.common.errors import UserError
from skillgen.common.storage import Location, resolve

__all__ = ["Output", "SHOWN", "check_no_overlap", "check_output_dir", "check_output_file", "check_writable_path",
           "folder_entries"]

SHOWN = 3  # entries of a refused folder named in the message


@dataclass(frozen=True)
class Output:
    """A checked output folder and what it held: ``nothing``, this command's ``own`` earlier output, or
    ``foreign`` files the user said ``--overwrite`` to. :meth:`clear` removes either before the new output."""

    location: Location
    flag: str
    holds: str  # "nothing" | "own" | "foreign"

    def clear(self, keep: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
        """Empty the folder but for the top-level names in ``keep`` (e.g. a fit's own checkpoints); with
        ``only``, remove just those names (what the command itself writes)."""
        if self.holds == "nothing":
            return
        for name in (n.rstrip("/") for n in folder_entries(self.location)):
            if name not in keep and (only is None or name in only):
                _remove(self.location / name)


def check_writable_path(path: Path, flag: str, want: str = "dir") -> None:
    """``path`` (``want``: "dir" or "file") is of that kind if it exists, else can be created: its nearest
    existing parent is a writable folder."""
    if path.exists():
        if want == "dir" and not path.is_dir():
            raise UserError(f"{flag} {path}: is a file, not a directory")
        if want == "file" and path.is_dir():
            raise UserError(f"{flag} {path}: is a directory; give a file name")
        folder = path if path.is_dir() else path.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {path}: not writable: no write permission in {folder}")
        return
    parent = path.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: not writable: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: not writable: no write permission in {parent}")


def check_output_dir(where: str | Path | Location, flag: str, *, overwrite: bool = False,
                     is_own: Callable[[Location], bool] | None = None, own_kind: str = "an earlier output of this command",
                     inputs: Iterable[tuple[str, str | Path | Location]] = ()) -> Output:
    """Check an output folder before anything is written; see the module docstring."""
    location = resolve(Path(where).expanduser() if isinstance(where, Path) else where, flag)
    if location.is_local:
        check_writable_path(location.local_path, flag, "dir")
    check_no_overlap(location, flag, inputs, deleting=overwrite)
    found = folder_entries(location)
    if not found:
        return Output(location, flag, holds="nothing")
    if is_own is not None and is_own(location):
        return Output(location, flag, holds="own")
    if overwrite:
        return Output(location, flag, holds="foreign")
    what = "not an empty directory" if is_own is None else f"not empty and not {own_kind}"
    raise UserError(f"{flag} {location}: {what} (holds {_names(found)}); "
                    "choose a new or empty directory, or pass --overwrite to replace its contents")


def check_output_file(path: Path, flag: str, *, overwrite: bool = False, is_own: Callable[[Path], bool] | None = None,
                      own_kind: str = "an earlier output of this command") -> None:
    """Check an output file: creatable, and if it exists empty, this command's own earlier output, or ``overwrite``."""
    path = path.expanduser()
    check_writable_path(path, flag, "file")
    if not path.exists() or overwrite or path.stat().st_size == 0 or (is_own is not None and is_own(path)):
        return
    raise UserError(f"{flag} {path}: exists and is not {own_kind}; choose a new file name, or pass --overwrite to replace it")


def check_no_overlap(output: Location, flag: str, inputs: Iterable[tuple[str, str | Path | Location]],
                     deleting: bool = False) -> None:
    """An output folder may neither be, hold, nor sit inside an input it reads (``inputs``: (flag, path) pairs)."""
    for name, value in inputs:
        source = resolve(Path(value).expanduser() if isinstance(value, Path) else value, name)
        if source.scheme != output.scheme:
            continue
        if _within(source.path, output.path):
            what = "would delete" if deleting else "holds"
            raise UserError(f"{flag} {output}: {what} {name} {source}; write the output somewhere else")
        if _within(output.path, source.path):
            raise UserError(f"{flag} {output}: is inside {name} {source}; write the output somewhere else")


def folder_entries(location: Location) -> list[str]:
    """Top-level names in a folder ('name/' for a subfolder), sorted; [] if it is missing or empty."""
    if location.is_local:
        folder = location.local_path
        if not folder.is_dir():
            return []
        return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    names: set[str] = set()
    for found in location.list(recursive=True):
        rel = str(found)[len(str(location)) + 1:]
        head, _, rest = rel.partition("/")
        names.add(head + ("/" if rest else ""))
    return sorted(names)


def _within(inner: str, outer: str) -> bool:
    inner, outer = inner.rstrip("/"), outer.rstrip("/")
    return inner == outer or inner.startswith(outer + "/")


def _names(found: list[str]) -> str:
    shown = ", ".join(found[:SHOWN])
    return shown + (f" and {len(found) - SHOWN} more" if len(found) > SHOWN else "")


def _remove(location: Location) -> None:
    if not location.is_local:
        for found in location.list(recursive=True):
            found.delete()
        location.delete()
        return
    path = location.local_path
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
