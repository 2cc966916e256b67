"""``skillgen report --relevance``: where each sentence's own skill ranks for an encoder, on a run dir whose
relevant and irrelevant sentences are known (tests/helpers/relevance_fixture.py), locally and on S3, with the real
bundled all-MiniLM-L6-v2 (a second or two on 8 skills)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.relevance_fixture import IRRELEVANT, RELEVANT_SHARE, build_run_dir, write_taxonomy


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))  # the label embeddings' cache


def check(relevance: dict) -> None:
    assert relevance["sentences"] == 16 and relevance["skills"] == 4 and relevance["candidates"] == 8
    assert relevance["top1_pct"] == round(100 * RELEVANT_SHARE, 2) and relevance["top10_pct"] == 100.0
    assert relevance["model"] == "all-MiniLM-L6-v2" and relevance["unranked"] == 0
    worst = relevance["least_relevant"][0]
    assert worst["label"] == "play violin" and worst["top1_pct"] == 50.0
    picks = {p["sentence"]: p for p in worst["samples"]}
    assert [picks[s]["first"] for s in IRRELEVANT if s in picks] == ["bake bread"] * len([s for s in IRRELEVANT if s in picks])
    assert all(p["rank"] > 1 for s, p in picks.items() if s in IRRELEVANT)
    assert all(s["top1_pct"] == 100.0 for s in relevance["least_relevant"][1:])


def test_report_relevance_on_a_local_run_dir(tmp_path: Path, capsys):
    from skillgen.cli import main

    build_run_dir(tmp_path / "run", write_taxonomy(tmp_path / "skills.csv"))
    assert main(["report", str(tmp_path / "run"), "--relevance", "--samples", "4", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    check(got["relevance"])
    assert got["sentences"] == 16  # the lexical report is still there

    assert main(["report", str(tmp_path / "run"), "--relevance"]) == 0
    text = capsys.readouterr().out
    assert "own skill first for 87.5%" in text and "[play violin] median rank" in text


def test_report_relevance_on_an_s3_run_dir(s3_bucket, tmp_path: Path, capsys):
    from skillgen.cli import main

    run_dir = f"{s3_bucket}/runs/relevance"
    build_run_dir(run_dir, write_taxonomy(tmp_path / "skills.csv"))
    assert main(["report", run_dir, "--relevance", "--samples", "4", "--json"]) == 0
    check(json.loads(capsys.readouterr().out)["relevance"])


def test_bad_relevance_flags_are_one_line(tmp_path: Path, capsys):
    from skillgen.cli import main

    build_run_dir(tmp_path / "run", write_taxonomy(tmp_path / "skills.csv"))
    assert main(["report", str(tmp_path / "run"), "--model", str(tmp_path)]) == 2
    assert "add --relevance" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "run"), "--relevance", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model" in err and "Traceback" not in err
    assert main(["report", str(tmp_path / "run"), "--relevance", "--esco", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--esco" in err and "Traceback" not in err


def test_a_taxonomy_without_the_runs_skills_is_one_line_not_a_report_of_zeros(tmp_path: Path, capsys):
    from conftest import synthetic_skill_rows, write_esco_csv

    from skillgen.cli import main

    build_run_dir(tmp_path / "run", write_taxonomy(tmp_path / "skills.csv"))
    other = write_esco_csv(tmp_path / "other.csv", synthetic_skill_rows(5))
    assert main(["report", str(tmp_path / "run"), "--relevance", "--esco", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of its 4 skills" in err and "--esco" in err


def test_ranks_count_the_skills_that_score_strictly_higher():
    from skillgen.quality.relevance import rank_own

    skills = np.eye(3, dtype=np.float32)
    sentences = np.array([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.1, 0.2, 0.9], [0.6, 0.3, 0.1]], dtype=np.float32)
    ranks, best = rank_own(sentences, skills, np.array([0, 1, 0, -1]))
    assert ranks.tolist() == [1, 1, 3, 0]  # a tie favours the own skill; -1 (not in the taxonomy) is not ranked
    assert best.tolist() == [0, 0, 2, 0]


def test_the_pipeline_report_line(tmp_path: Path):
    """cluster/run_report.py: one line for the start encoder; one that cannot be loaded is said, not raised."""
    from cluster.run_report import relevance_line

    build_run_dir(tmp_path / "run", write_taxonomy(tmp_path / "skills.csv"))
    line = relevance_line(tmp_path / "run", None)
    assert line.startswith("Relevance (all-MiniLM-L6-v2") and "own skill first for 87.5%" in line and "\n" not in line
    assert relevance_line(tmp_path / "run", tmp_path / "nope").startswith("Relevance: not measured (")
