"""ESCO loader: both CSV layouts, slices, and one clear line for each bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ESCO_HEADER, synthetic_skill_rows, write_esco_csv
from skillgen.common.errors import UserError
from skillgen.common.taxonomy import iter_skills, label_skill_id, load_skills, random_n, select

OFFICIAL_HEADER = ("conceptType", "conceptUri", "skillType", "reuseLevel", "preferredLabel", "altLabels",
                   "hiddenLabels", "status", "modifiedDate", "scopeNote", "definition", "inScheme", "description")


def test_reduced_layout_loads_with_lists_and_ids(esco_csv):
    df = load_skills(esco_csv)
    assert df.columns == ["skill_id", "label", "alt_labels", "description", "skill_type", "reuse_level"]
    assert df.height == 40
    first = next(iter_skills(df))
    assert first.skill_id == "http://example.org/skill/00000"
    assert first.alt_labels == ("handle welding 0", "welding work 0")
    assert first.skill_type == "knowledge"


def test_official_layout_selects_columns_by_name(tmp_path):
    rows = [("KnowledgeSkillCompetence", "http://x/1", "knowledge", "transversal", "use spreadsheets", "excel\nsheets",
             "", "released", "2020", "", "", "", "Work with tables of numbers.")]
    df = load_skills(write_esco_csv(tmp_path / "official.csv", rows, OFFICIAL_HEADER))
    row = df.row(0, named=True)
    assert (row["label"], row["alt_labels"], row["reuse_level"]) == ("use spreadsheets", ["excel", "sheets"], "transversal")


def test_missing_uri_gets_stable_label_hash(tmp_path):
    df = load_skills(write_esco_csv(tmp_path / "s.csv", [("", "bake bread", "", "", "", "")]))
    assert df["skill_id"][0] == label_skill_id("bake bread") == label_skill_id(" bake bread ")
    assert df["skill_id"][0].startswith("esco-label:")


def test_shared_uri_gets_label_suffix_not_an_error(tmp_path):
    rows = [("http://x/1", "a", "", "", "", ""), ("http://x/1", "b", "", "", "", "")]
    ids = load_skills(write_esco_csv(tmp_path / "s.csv", rows))["skill_id"].to_list()
    assert len(set(ids)) == 2 and all(i.startswith("http://x/1#") for i in ids)


def test_slices_are_reproducible(esco_csv):
    df = load_skills(esco_csv)
    assert random_n(df, 5, seed=3)["label"].to_list() == random_n(df, 5, seed=3)["label"].to_list()
    assert random_n(df, 5, seed=3)["label"].to_list() != random_n(df, 5, seed=4)["label"].to_list()
    assert select(df, types=["knowledge"]).height == 10
    assert select(df, labels=["manage payroll systems 1"]).height == 1
    assert select(df, limit=7).height == 7
    with pytest.raises(UserError, match="unknown ESCO label"):
        select(df, labels=["no such skill"])


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"", "file is empty"),
        (b"conceptUri,description\nhttp://x/1,foo\n", "missing required column 'preferredLabel'"),
        (",".join(ESCO_HEADER).encode() + b"\nhttp://x/1,caf\xe9 work,,,,\n", "not UTF-8 (invalid byte at line 2)"),
        (",".join(ESCO_HEADER).encode() + b"\nhttp://x/1,bake,,,,\nhttp://x/2,bake,,,,\n", "duplicate preferredLabel values (1): 'bake'"),
        (",".join(ESCO_HEADER).encode() + b"\nhttp://x/1,bake,,,,\nhttp://x/2,  ,,,,\n", "empty preferredLabel in data row(s) 2"),
        (",".join(ESCO_HEADER).encode() + b"\n", "no skill rows"),
    ],
)
def test_bad_input_raises_user_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "skills.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as info:
        load_skills(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"conceptUri\nhttp://x/1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "skilltrain.cli", "eval", "--esco", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"skilltrain: error: {bad}: missing required column 'preferredLabel' (found: conceptUri)"]


def test_shared_uri_suffix_applies_on_every_load_not_only_the_first(tmp_path):
    """The warning is once per process; the ids must not depend on whether it was already shown."""
    path = write_esco_csv(tmp_path / "s.csv", [("http://x/1", "weld steel", "", "", "", ""), ("http://x/1", "weld iron", "", "", "", "")])
    first, second = load_skills(path), load_skills(path)
    assert first["skill_id"].n_unique() == 2
    assert first["skill_id"].to_list() == second["skill_id"].to_list()
