"""The bundled ESCO taxonomy and TECH/HOUSE benchmarks: intact, equal to the reference copy, and the default."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import polars as pl
import pytest

from conftest import synthetic_skill_rows, write_benchmarks, write_esco_csv
from skillgen.common import paths
from skillgen.common.errors import UserError
from skillgen.common.taxonomy import load_skills
from skilltrain.evaluation.evaluate import dropped_gold_note, load_benchmarks

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data"  # the team's reference copy, when present


@pytest.fixture(autouse=True)
def _no_user_data(monkeypatch):
    monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(paths.ESCO_CSV_ENV, raising=False)


def test_manifest_names_source_licence_and_checksum_of_every_file():
    entries = paths.manifest()["files"]
    shipped = {p.relative_to(paths.bundled_data_dir()).as_posix() for p in paths.bundled_data_dir().rglob("*.parquet")}
    assert {e["file"] for e in entries} == shipped and len(shipped) == 5
    for entry in entries:
        assert entry["licence"].startswith("CC BY 4.0") and entry["source"] and entry["version"] and len(entry["sha256"]) == 64
    assert paths.verify_bundled() == []


def test_verify_reports_a_damaged_file(tmp_path, monkeypatch):
    copy = tmp_path / "data"
    import shutil

    shutil.copytree(paths.bundled_data_dir(), copy)
    (copy / "benchmarks" / "tech_test.parquet").write_bytes(b"damaged")
    monkeypatch.setattr(paths, "bundled_data_dir", lambda: copy)
    assert paths.verify_bundled() == ["benchmarks/tech_test.parquet"]


def test_default_taxonomy_is_the_bundled_esco_v110():
    skills = load_skills()
    assert skills.height == 13896 and skills["label"].n_unique() == 13896
    assert paths.is_bundled_esco(paths.default_esco_path())


def test_default_benchmarks_are_bundled_and_score_the_documented_sentence_counts():
    skills = load_skills()
    counts = {(b.name, b.split): len(b.sentences) for split in ("validation", "test") for b in load_benchmarks(skills, split=split)}
    assert counts == {("tech", "validation"): 75, ("house", "validation"): 61, ("tech", "test"): 338, ("house", "test"): 261}
    house_test = load_benchmarks(skills, ["house"], "test")[0]
    assert house_test.dropped_gold == ("plan ",)  # the one v1.1.0 benchmark label missing from the taxonomy


@pytest.mark.skipif(not (REFERENCE / "esco" / "skills_en.csv").exists(), reason="no reference copy (../shared) beside the checkout")
def test_bundled_files_equal_the_reference_csvs():
    assert load_skills().equals(load_skills(REFERENCE / "esco" / "skills_en.csv"))
    for name in ("tech", "house"):
        for split in ("validation", "test"):
            bundled = pl.read_parquet(paths.bundled_data_dir() / "benchmarks" / f"{name}_{split}.parquet")
            assert bundled.equals(pl.read_csv(REFERENCE / "benchmarks" / f"{name}_{split}.csv", infer_schema=False))


def test_environment_overrides_still_win(tmp_path, monkeypatch):
    rows = synthetic_skill_rows(12)
    write_esco_csv(tmp_path / "data" / "esco" / "skills_en.csv", rows)
    write_benchmarks(tmp_path / "data" / "benchmarks", [r[1] for r in rows[:3]])
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "data"))
    skills = load_skills()
    assert skills.height == 12
    assert [len(b.sentences) for b in load_benchmarks(skills)] == [3, 3]
    monkeypatch.setenv(paths.ESCO_CSV_ENV, str(tmp_path / "missing.csv"))
    with pytest.raises(UserError, match="missing.csv.*bundled ESCO v1.1.0"):
        load_skills()


def test_official_zip_download_loads_and_names_dropped_gold_labels(tmp_path):
    """Another ESCO version through --esco: its skills_en.csv inside the ZIP, and a note on labels it lacks."""
    rows = synthetic_skill_rows(8)
    csv_path = write_esco_csv(tmp_path / "skills_en.csv", rows)
    archive = tmp_path / "ESCO dataset - v1.2.0 - classification - en - csv.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("occupations_en.csv", "conceptUri,preferredLabel\nx,y\n")
        zf.write(csv_path, "skills_en.csv")
    skills = load_skills(archive)
    assert skills["label"].to_list() == [r[1] for r in rows]
    bench = write_benchmarks(tmp_path / "bench", [rows[0][1], "a label only v1.1.0 has"])
    loaded = load_benchmarks(skills, directory=bench)
    assert [len(b.sentences) for b in loaded] == [1, 1]
    note = dropped_gold_note(loaded)
    assert note is not None and "TECH test 1" in note and "a label only v1.1.0 has" in note


def test_zip_without_skills_csv_is_one_clear_line(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("occupations_en.csv", "a,b\n")
    with pytest.raises(UserError, match=r"other\.zip: ZIP has no skills_en\.csv"):
        load_skills(archive)


def test_manifest_is_valid_json_with_row_counts():
    data = json.loads((paths.bundled_data_dir() / "MANIFEST.json").read_text())
    for entry in data["files"]:
        assert pl.read_parquet(paths.bundled_data_dir() / entry["file"]).height == entry["rows"]
