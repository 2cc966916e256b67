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


def test_data_relevance_ranks_each_sentence_against_every_skill(tmp_path, tiny_encoder_dir):
    """benchmarks/data_relevance.py: a sentence that is its skill's label ranks that skill first; one that is
    another skill's label ranks its own skill lower; the summary's shares follow from the ranks."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from data_relevance import run_ranks, summarise

    skills = pl.DataFrame({"skill_id": [f"s{i}" for i in range(12)],
                           "label": [row[1] for row in synthetic_skill_rows(12)]})
    run = tmp_path / "run"
    (run / "shards").mkdir(parents=True)
    sentences = skills["label"].to_list()[:3] + [skills["label"][7]]  # the last is s7's label, filed under s3
    pl.DataFrame({"skill_id": ["s0", "s1", "s2", "s3"], "sentence": sentences, "sample_idx": [0, 0, 0, 0],
                  "label": sentences, "request_key": "rk", "model": "m"}).write_parquet(run / "shards" / "part-00000.parquet")
    ranks = run_ranks(run, None, skills, tiny_encoder_dir)
    assert ranks[:3] == [1, 1, 1] and ranks[3] > 1
    summary = summarise(ranks)
    assert summary["sentences"] == 4 and summary["own_skill_top1"] == 0.75
