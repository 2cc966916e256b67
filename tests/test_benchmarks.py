"""Benchmark grouping rules and the eval command end to end on synthetic files."""

from __future__ import annotations

import json

import polars as pl

from conftest import synthetic_skill_rows, write_benchmarks, write_esco_csv
from skilltrain.evaluation.benchmarks import group_gold
from skilltrain.cli import main as skilltrain_main


def test_grouping_drops_non_skills_unknown_labels_and_empty_sentences():
    rows = pl.DataFrame(
        {
            "sentence": ["s1", "s1", "s1", "s2", "s2", "s3", "s1"],
            "label": ["bake", "UNDERSPECIFIED", "cook", "LABEL NOT PRESENT", "not in taxonomy", "cook", "bake"],
        }
    )
    grouped = group_gold(rows, {"bake", "cook"})
    assert [(g.sentence, g.gold_labels) for g in grouped] == [("s1", ("bake", "cook")), ("s3", ("cook",))]


def test_eval_cli_writes_json_in_the_documented_shape(tmp_path, tiny_encoder_dir):
    rows = synthetic_skill_rows(30)
    esco = write_esco_csv(tmp_path / "skills.csv", rows)
    write_benchmarks(tmp_path / "bench", [r[1] for r in rows[:8]])
    out = tmp_path / "results.json"
    code = skilltrain_main(["eval", "--model", str(tiny_encoder_dir), "--esco", str(esco),
                            "--benchmark-dir", str(tmp_path / "bench"), "--split", "validation", "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results) == {"tech", "house"}
    tech = results["tech"]
    assert tech["n"] == 8
    assert set(tech) == {"RP@1", "RP@5", "RP@10", "MRR", "n", "ci95"}
    assert all(0.0 <= tech[m] <= 100.0 for m in ("RP@1", "RP@5", "RP@10", "MRR"))
    assert tech["RP@1"] <= tech["RP@5"] <= tech["RP@10"]
    lo, hi = tech["ci95"]["RP@5"]
    assert lo <= tech["RP@5"] <= hi


def test_eval_cli_rejects_unknown_set(capsys):
    assert skilltrain_main(["eval", "--sets", "tech,finance"]) == 2
    assert "unknown set(s) finance" in capsys.readouterr().err
