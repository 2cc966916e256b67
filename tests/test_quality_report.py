"""The data-quality report and the dataset export against a hand-built run dir with known numbers,
on local disk and on S3 (SeaweedFS), through the CLI as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from helpers.quality_fixture import EXPECTED, N, build_run_dir


def check(report) -> None:
    assert report.sentences == EXPECTED["sentences"] and report.skills == EXPECTED["skills"]
    assert report.per_skill["skills_short_of_n"] == EXPECTED["skills_short_of_n"]
    assert report.skills_failed == EXPECTED["skills_failed"]
    for key in ("within_skill", "across_skills", "template_across_skills"):
        assert report.duplicates[key] == EXPECTED[key], key
    assert report.near_duplicates_within_skill == EXPECTED["near_duplicates_within_skill"]
    assert (report.label_verbatim, report.label_only) == (EXPECTED["label_verbatim"], EXPECTED["label_only"])
    assert {k: report.lengths[k] for k in EXPECTED["words"]} == EXPECTED["words"]
    assert report.failures["by_class"] == EXPECTED["by_class"]
    assert report.failures["validation_problems"] == EXPECTED["validation_problems"]
    assert report.headline()["label_only_%"] == round(100 * 2 / 11, 2)


def test_quality_numbers_match_the_hand_built_run_dir(tmp_path: Path):
    from skillgen.quality import quality_report

    build_run_dir(tmp_path / "run")
    report = quality_report(tmp_path / "run")
    check(report)
    assert report.n_sentences == N and report.models == ["smollm2"]
    # every sample sentence is one of the run's, grouped by the ESCO skill type of its (real) skill id
    assert report.samples and all(t != "unknown" for t in report.samples)


def test_distinct_ngrams_by_hand():
    from skillgen.quality.metrics import distinct_ngrams, with_keys

    rows = pl.DataFrame({"skill_id": ["a", "b"], "label": ["x", "y"], "sentence": ["A b.", "a C"]})
    got = distinct_ngrams(with_keys(rows))
    # unigrams a b a c: 3 of 4 distinct; bigrams "a b", "a c": 2 of 2; no trigram
    assert (got["distinct_1"], got["distinct_2"], got["distinct_3"]) == (0.75, 1.0, 0.0)


def test_report_and_export_cli_on_s3(s3_bucket, tmp_path: Path, capsys):
    """The same numbers from an s3:// run dir; the export lands on S3 and its card states the facts."""
    from skillgen.cli import main
    from skillgen.common.storage import resolve

    run_dir = f"{s3_bucket}/runs/q"
    build_run_dir(run_dir)
    assert main(["report", run_dir, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["duplicates"] == {k: EXPECTED[k] for k in ("within_skill", "across_skills", "template_across_skills")}
    assert (got["label_verbatim"], got["label_only"]) == (EXPECTED["label_verbatim"], EXPECTED["label_only"])

    out = f"{s3_bucket}/export/q"
    assert main(["export", run_dir, out]) == 0
    local = tmp_path / "export"
    resolve(out).download_dir(local)
    assert_loads(local)


def test_report_plots_and_export_locally(tmp_path: Path, capsys):
    from skillgen.cli import main

    build_run_dir(tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), "--plots", str(tmp_path / "plots")]) == 0
    text = capsys.readouterr().out
    assert "label_only_%" in text and "validation problems: duplicate 1" in text
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["quality_lengths.png", "quality_per_skill.png"]
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "export"), "--name", "fixture"]) == 0
    assert_loads(tmp_path / "export")


def assert_loads(folder: Path) -> None:
    """Polars alone reads the files the card's ``configs`` names; the card holds the facts a reuser needs."""
    import yaml

    from skillgen.llm.prompts import SYSTEM_PROMPT

    card = (folder / "README.md").read_text()
    _, header, body = card.split("---", 2)
    meta = yaml.safe_load(header)
    assert meta["license"] == "cc-by-4.0"
    pattern = meta["configs"][0]["data_files"][0]["path"]
    frame = pl.read_parquet(str(folder / pattern))
    assert frame.height == EXPECTED["sentences"] == meta["dataset_info"]["splits"][0]["num_examples"]
    assert [f["name"] for f in meta["dataset_info"]["features"]] == frame.columns
    assert frame["skill_type"].str.len_chars().min() > 0  # joined from the taxonomy
    for fact in ("ESCO skills pillar, v1.1.0", "CC BY 4.0", "`smollm2`", "Prompt version: `v1`", '"temperature": 1.0',
                 "Sentences: 11 for 3 skills", "failure record: 2", "Cost: $0.0000", SYSTEM_PROMPT[:60]):
        assert fact in body, fact


def test_export_of_a_run_dir_without_rows_is_one_line(tmp_path: Path, capsys):
    from skillgen.cli import main

    (tmp_path / "nothing").mkdir()  # a path that does not exist says so (tests/test_bad_input.py)
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no run.json" in err


def test_pipeline_report_section(tmp_path: Path):
    """cluster/run_report.py's data-quality section: the table, the failure reasons and both plots."""
    from cluster.run_report import quality_section

    build_run_dir(tmp_path / "run")
    lines = quality_section(tmp_path / "run", tmp_path)
    text = "\n".join(lines)
    assert f"| label_only_% | {round(100 * 2 / 11, 2)} |" in text and "validation problems named: duplicate 1" in text
    assert text.count("![") == 2 and (tmp_path / "report_quality_lengths.png").exists()


def test_unfilled_placeholders_are_counted():
    """SmolLM2's template slots ("[industry_specific]", issue 21) are flagged; round brackets are not."""
    import polars as pl

    from skillgen.quality.metrics import with_keys

    rows = pl.DataFrame({"skill_id": ["a", "a", "b"], "label": ["x", "x", "y"],
                         "sentence": ["You have experience with [industry_specific].", "You know SQL (PostgreSQL).",
                                      "Fill out the [optional requirement] form."]})
    assert with_keys(rows)["placeholder"].to_list() == [True, False, True]
